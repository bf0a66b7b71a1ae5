"""A running job's progress and outcome: its answer so far (`RunState`), checkpointed while it
grows, and its outcome (done, failed or cancelled) stored with its usage and timings and told to
its listeners."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.engine import Connection

from patchbay.backoff import Backoff
from patchbay.config import JobSettings
from patchbay.core.chats import chain_hash
from patchbay.core.llm.registry import Generation, ModelRegistry
from patchbay.errors import PatchbayError, StoreUnavailable
from patchbay.queue.base import EventBus, JobSpec
from patchbay.schemas.chats import Timings, Usage
from patchbay.schemas.jobs import ErrorInfo, JobEvent
from patchbay.store import chats as chat_rows
from patchbay.store import jobs as job_rows
from patchbay.store.db import Database

logger = logging.getLogger(__name__)

STORE_RETRY = Backoff(0.25, cap_s=5.0)  # storing an outcome while the database is away


@dataclass(slots=True)
class RunState:
    """A running job's progress: the answer so far, the last event number, the timings."""

    started: float
    started_at: datetime
    seq: int = 1
    last_activity: float = 0.0
    timed_out: bool = False
    ttft: float | None = None
    parts: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, object]] = field(default_factory=list)  # helpers it called

    @property
    def content(self) -> str:
        return "".join(self.parts)

    def timings(self) -> Timings:
        ttft = None if self.ttft is None else round(self.ttft * 1000, 2)
        return Timings(ttft_ms=ttft, duration_ms=round((time.monotonic() - self.started) * 1000, 2))


class JobOutcomes:
    """Stores a running job's answer as it grows and its outcome when it ends, and tells its
    listeners the outcome."""

    def __init__(
        self,
        *,
        db: Database,
        bus: EventBus,
        registry: ModelRegistry,
        settings: JobSettings,
        exclusive: bool = False,
    ) -> None:
        """`exclusive`: the jobs come from an in-process queue, so their listeners are here."""
        self._db = db
        self._bus = bus
        self._registry = registry
        self._settings = settings
        self._exclusive = exclusive

    async def checkpoint(self, job: JobSpec, state: RunState) -> None:
        """Save the answer so far, so a crash or a reader sees it grow; skipped while the
        database is unavailable (the final answer is stored with retries)."""
        content = state.content

        def save(conn: Connection) -> None:
            chat_rows.update_message(conn, job.message_id, content=content, status="streaming")

        try:
            await self._db.write(save)
        except StoreUnavailable:
            logger.warning("job %s: checkpoint skipped, the database is unavailable", job.job_id)

    async def complete(self, job: JobSpec, state: RunState, generation: Generation) -> None:
        """Store the finished answer with its usage and timings, and tell the listeners."""
        content = state.content
        usage = Usage(input_tokens=generation.input_tokens, output_tokens=generation.output_tokens)
        timings = state.timings()
        now = datetime.now(UTC)

        def save(conn: Connection) -> None:
            extra = _metadata(job, state, finish_reason=generation.finish_reason)
            chat_rows.update_message(
                conn,
                job.message_id,
                **extra,
                content=content,
                status="complete",
                prefix_hash=chain_hash(job.prefix_hash, "assistant", content),
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                ttft_ms=timings.ttft_ms,
                duration_ms=timings.duration_ms,
                updated_at=now,
            )
            job_rows.update_job(
                conn,
                job.job_id,
                status="done",
                finished_at=now,
                last_seq=state.seq + 1,
            )

        done = JobEvent(
            job_id=job.job_id,
            seq=state.seq + 1,
            type="done",
            content=content,
            finish_reason=generation.finish_reason,
            usage=usage,
            timings=timings,
            model=job.model,
        )
        await self._conclude(job, save, done)
        self._registry.log(generation)
        logger.info(
            "job %s done: %s, %s tokens out, %.0f ms",
            job.job_id,
            job.model,
            usage.output_tokens,
            timings.duration_ms or 0,
        )

    async def fail(
        self,
        job: JobSpec,
        state: RunState,
        error: PatchbayError,
        *,
        status: Literal["failed", "cancelled"] = "failed",
    ) -> None:
        """Keep the partial answer, marked failed (or cancelled) with the reason, and tell the
        listeners."""
        now = datetime.now(UTC)
        content = state.content

        def save(conn: Connection) -> None:
            extra = _metadata(job, state, error=kept_error(error))
            chat_rows.update_message(
                conn, job.message_id, **extra, content=content, status=status, error=error.message
            )
            job_rows.update_job(
                conn,
                job.job_id,
                status=status,
                error=error.message,
                finished_at=now,
                last_seq=state.seq + 1,
            )

        ended = JobEvent(
            job_id=job.job_id,
            seq=state.seq + 1,
            type=status,
            content=state.content,
            error=ErrorInfo(code=error.code, message=error.message, retryable=error.retryable),
            model=job.model,
        )
        await self._conclude(job, save, ended)
        logger.warning("job %s %s: %s: %s", job.job_id, status, error.code, error.message)

    async def _conclude(
        self, job: JobSpec, save: Callable[[Connection], None], outcome: JobEvent
    ) -> None:
        """Store a job's outcome and tell its listeners.

        When the listeners are in this process (an in-process queue) and the store queues its
        writes (SQLite's writer), the outcome is queued, then told, and committed once the
        listeners it woke have had their turn: a waiting client has its answer a commit sooner.
        It stays in order all the same: it is written before any write queued later (the
        chat's next turn), and reads wait for it (`Database.connect`). Otherwise it is stored,
        then told.
        """
        queued = self._db.write_soon(save, told=True) if self._exclusive else None
        if queued is None:
            await self._persist(job, save)
            await self._bus.publish(outcome)
            return
        await self._bus.publish(outcome)
        try:
            await queued
        except StoreUnavailable:
            await self._persist(job, save)

    async def _persist(self, job: JobSpec, save: Callable[[Connection], None]) -> None:
        """Store a job's outcome, waiting out a database outage for a while.

        The answer is already made: rather than lose it to a database that is briefly away
        (locked, restarting), try again with backoff; past the limit, say so in the log and let
        the listeners have it anyway.
        """
        waits = STORE_RETRY.within(self._settings.store_retry_s, cut=False)
        while True:
            try:
                await self._db.write(save)
                return
            except StoreUnavailable:
                wait = next(waits, None)
                if wait is None:
                    logger.error(
                        "job %s: the database stayed away; its outcome is not stored", job.job_id
                    )
                    return
                logger.warning(
                    "job %s: database unavailable, storing again in %.1fs", job.job_id, wait
                )
                await asyncio.sleep(wait)


def kept_error(error: PatchbayError) -> dict[str, object]:
    """What of a failed job's error its answer's metadata keeps, for a listener that comes once
    its events are gone: the code, and whether to try again (the message is the answer's)."""
    return {"code": error.code, "retryable": error.retryable}


def _metadata(job: JobSpec, state: RunState, **outcome: object) -> dict[str, object]:
    """An answer's metadata, when its outcome is stored: the tools it called, the template it
    was stored with (written again: the update replaces the metadata whole), and what of its
    outcome a listener resuming from the store is told again (`outcome`: the finish reason, or
    the error's code and whether to try again)."""
    metadata: dict[str, object] = dict(outcome)
    if state.tool_calls:
        metadata["tool_calls"] = state.tool_calls
    if job.template is not None:
        metadata["assistant"] = job.template
    return {"metadata": metadata}
