"""Running a job: claim it, start the model's answer (a template's streams in turn), stream it
as numbered events, end it on cancel or when it stalls; `outcomes` stores it, `following` serves
its events to listeners."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from typing import Literal

from sqlalchemy.engine import Connection

from patchbay.config import JobSettings
from patchbay.core.assistants import stream_messages
from patchbay.core.catalog import Catalog
from patchbay.core.following import JobFollower
from patchbay.core.helpers import HelperRegistry
from patchbay.core.llm.registry import Generation, ModelRegistry, ToolSpec
from patchbay.core.outcomes import JobOutcomes
from patchbay.core.outcomes import RunState as RunState  # re-exported: turns make one to fail a job
from patchbay.errors import (
    JobCancelled,
    PatchbayError,
    ProviderTimeout,
    StoreUnavailable,
)
from patchbay.logging import job_id_var
from patchbay.queue.base import EventBus, JobSpec
from patchbay.schemas.assistants import AssistantTemplate
from patchbay.schemas.jobs import ErrorInfo, JobEvent, JobRead
from patchbay.schemas.users import UserRead
from patchbay.store import chats as chat_rows
from patchbay.store import jobs as job_rows
from patchbay.store.db import Database

logger = logging.getLogger(__name__)

# Each attempt at a job numbers its events from (attempt - 1) * EPOCH, so a worker that takes a
# job over never reuses a number another already sent: listeners resume across takeovers.
EPOCH = 1_000_000_000
CANCEL_REASON = "cancelled by its owner; the answer so far is kept"
# How long a job run by an in-process queue may show as queued in the store after it started: its
# claim waits that long to share the next write's commit (for a short answer, its outcome's).
CLAIM_WITHIN_S = 0.25
# How many cancelled jobs a runner remembers until they would run: a job cancelled for good
# before it was queued (one waiting behind another) never comes, and is forgotten in turn.
MAX_CANCELLED = 10_000


class JobRunner:
    """Runs jobs taken from a queue and serves their events to listeners (its `follower`)."""

    def __init__(
        self,
        *,
        db: Database,
        catalog: Catalog,
        registry: ModelRegistry,
        bus: EventBus,
        settings: JobSettings,
        helpers: HelperRegistry | None = None,
        exclusive: bool = False,
    ) -> None:
        """`exclusive`: the jobs come from an in-process queue, so no other process runs them."""
        self._db = db
        self._exclusive = exclusive
        self._helpers = helpers
        self._catalog = catalog
        self._registry = registry
        self._bus = bus
        self._settings = settings
        self._cancelled: dict[str, None] = {}  # job ids, oldest first: see `request_cancel`
        self._outcomes = JobOutcomes(
            db=db, bus=bus, registry=registry, settings=settings, exclusive=exclusive
        )
        self.follower = JobFollower(db=db, bus=bus, exclusive=exclusive)

    async def publish(self, event: JobEvent) -> None:
        await self._bus.publish(event)

    async def recover(self, queue_name: str) -> None:
        """Fail the jobs a previous run of this queue left unfinished, with the reason."""
        count = await self._db.write(
            lambda conn: job_rows.fail_unfinished(
                conn,
                queue=queue_name,
                reason="the core restarted while this job was running; send the turn again",
            )
        )
        if count:
            logger.warning("marked %d unfinished jobs from a previous run as failed", count)

    def request_cancel(self, job_id: str) -> None:
        """Mark a job cancelled by its owner; `run` ends it as cancelled, keeping what it has,
        or skips it if it has not started. The last `MAX_CANCELLED` are kept."""
        self._cancelled[job_id] = None
        if len(self._cancelled) > MAX_CANCELLED:
            del self._cancelled[next(iter(self._cancelled))]

    async def cancel_orphan(self, job_id: str, model: str) -> None:
        """Cancel a job no process is running (its worker died): stored, and told to its
        listeners, which heard the worker's events and wait for an end. The `cancelled` event
        comes after any event of the attempt the worker was at (and no attempt comes after)."""
        self._cancelled.pop(job_id, None)

        def cancel(conn: Connection) -> JobEvent | None:
            told = max(job_rows.attempts(conn, job_id), 1) * EPOCH
            if not job_rows.cancel_unfinished(conn, job_id, reason=CANCEL_REASON, last_seq=told):
                return None
            found = job_rows.find_job(conn, job_id)
            answer = None if found is None else chat_rows.find_message(conn, found[0].message_id)
            return JobEvent(  # with the answer as far as it was checkpointed, which it keeps
                job_id=job_id,
                seq=told,
                type="cancelled",
                content=answer.content if answer is not None else "",
                error=ErrorInfo(code=JobCancelled.code, message=CANCEL_REASON),
                model=model,
            )

        event = await self._db.write(cancel)
        if event is not None:
            await self._bus.publish(event)

    async def cancel_if_queued(self, job_id: str, model: str) -> bool:
        """Cancel a job no worker has taken yet (or still waiting behind another): stored and
        told here; a worker that gets it later finds it cancelled and skips it (an in-process
        queue's `run` is told: see `_claim`; its turn may queue it after this)."""
        told = 2  # the number of its `cancelled` event: `queued` was the only one before
        cancelled = await self._db.write(
            lambda conn: job_rows.cancel_unfinished(
                conn, job_id, reason=CANCEL_REASON, statuses=("waiting", "queued"), last_seq=told
            )
        )
        if cancelled:
            if self._exclusive:
                self.request_cancel(job_id)
            error = ErrorInfo(code=JobCancelled.code, message=CANCEL_REASON)
            await self._bus.publish(
                JobEvent(
                    job_id=job_id, seq=told, type="cancelled", content="", error=error, model=model
                )
            )
        return cancelled

    async def _claim(self, job: JobSpec) -> int | None:
        """Mark the job running: its attempt, or None when it must not run.

        With an in-process queue no other process ever runs the job, so unless it was cancelled
        while it waited the answer is known (attempt 1). On SQLite the write is then queued and
        not waited for: every later write for the job (a cancel, its outcome) is queued after it.
        It waits up to `CLAIM_WITHIN_S` to share the next write's commit, so a short answer
        stores its claim and its outcome in one commit; a commit is a tenth of a turn's
        latency, and the loop is free when the model's answer comes.
        """
        now = datetime.now(UTC)

        def claim(conn: Connection) -> int | None:
            return job_rows.claim(conn, job.job_id, now)

        if self._exclusive and job.job_id not in self._cancelled:
            queued = self._db.write_soon(claim, within_s=CLAIM_WITHIN_S)
            if queued is not None:
                queued.add_done_callback(partial(_claimed_later, job.job_id))
                return 1
        try:
            return await self._db.write(claim)
        except StoreUnavailable:
            logger.warning("job %s: could not mark it running; running it anyway", job.job_id)
            return 1

    async def run(self, job: JobSpec) -> None:
        """Run one job to its end: the queue's handler."""
        job_id_var.set(job.job_id)
        attempt = await self._claim(job)
        if attempt is None:
            self._cancelled.pop(job.job_id, None)
            logger.info("job %s skipped: it was cancelled or ended before it started", job.job_id)
            return
        state = RunState(started=time.monotonic(), started_at=datetime.now(UTC))
        if attempt > 1:  # a takeover: this attempt's events are numbered on from here
            state.seq = (attempt - 1) * EPOCH
        if attempt > self._settings.max_attempts:
            stopped = attempt - 1
            logger.error(
                "job %s: %d workers stopped before its end; failing it", job.job_id, stopped
            )
            error = PatchbayError(
                f"every worker that ran this job stopped before its end ({stopped}); "
                "it is not started again"
            )
            await self.fail(job, state, error)
            return
        logger.info("job %s started (attempt %d)", job.job_id, attempt)
        if attempt > 1:
            state.seq += 1
            await self._bus.publish(
                JobEvent(job_id=job.job_id, seq=state.seq, type="restarted", model=job.model)
            )
            logger.warning("job %s: taken over (attempt %d), starting again", job.job_id, attempt)
        if job.job_id in self._cancelled:
            await self._end_cancelled(job, state)
            return
        try:
            tools = await self._tools(job, state)
            if job.template is not None:
                generation = await self._run_template(job, job.template, tools)
            else:
                target = await self._catalog.resolve(job.model)
                generation = await self._registry.start_generation(
                    target,
                    conversation_id=job.chat_id,
                    messages=list(job.messages),
                    options=job.options,
                    stream=job.stream,
                    tools=tools,
                )
            await self._stream(job, generation, state)
        except PatchbayError as exc:
            await self.fail(job, state, exc)
            return
        except Exception as exc:  # a bug, not the model: the job still ends, as failed
            logger.exception("job %s failed inside patchbay", job.job_id)
            error = PatchbayError(f"the job failed inside patchbay ({type(exc).__name__})")
            await self.fail(job, state, error)
            return
        except asyncio.CancelledError as exc:
            await self._interrupted(job, state, exc)
            return
        await self._outcomes.complete(job, state, generation)

    async def _interrupted(
        self, job: JobSpec, state: RunState, exc: asyncio.CancelledError
    ) -> None:
        """The job's task was cancelled: by its owner (it ends as cancelled), or as this process
        stops or loses its queue. Then a shared queue gives the job to another worker, which
        starts it again; an in-process one cannot, and it ends failed. Raises `exc` then."""
        if job.job_id in self._cancelled:
            this = asyncio.current_task()
            if this is not None:
                this.uncancel()
            await asyncio.shield(self._end_cancelled(job, state))
            return
        if self._exclusive:
            error = PatchbayError("the core stopped while this job was running; send it again")
            await asyncio.shield(self.fail(job, state, error))
        else:
            logger.warning(
                "job %s: stopped here before its end; left to another worker", job.job_id
            )
        raise exc

    async def _tools(self, job: JobSpec, state: RunState) -> list[ToolSpec]:
        """The helpers' tools this job's user may use; their calls are kept in `state`."""
        if self._helpers is None:
            return []
        try:
            return await self._helpers.tools_for(job.user_id, state.tool_calls)
        except PatchbayError as exc:  # no tools rather than no answer
            logger.warning("job %s: no tools offered: %s", job.job_id, exc.message)
            return []

    async def _run_template(
        self, job: JobSpec, template_json: dict[str, object], tools: list[ToolSpec]
    ) -> Generation:
        """Run every stream but the last to its end, each one's output feeding the next; start
        the last one and return it, to be streamed like any answer."""
        template = AssistantTemplate.model_validate(template_json)
        *history, query = job.messages
        previous = ""
        for index, stream in enumerate(template.streams):
            target = await self._catalog.resolve_in(stream.provider, stream.settings.model)
            last = index == len(template.streams) - 1
            generation = await self._registry.start_generation(
                target,
                conversation_id=job.chat_id,
                messages=stream_messages(stream, history, query=query, previous=previous),
                options={
                    **job.options,
                    **stream.settings.model_dump(exclude_none=True, exclude={"model"}),
                },
                stream=job.stream if last else False,
                tools=tools if last else None,
            )
            if last:
                return generation
            previous = "".join([delta async for delta in generation.deltas()])
            self._registry.log(generation)
        raise AssertionError("a template has at least one stream")  # pragma: no cover

    async def _end_cancelled(self, job: JobSpec, state: RunState) -> None:
        error = JobCancelled(CANCEL_REASON)
        await self.fail(job, state, error, status="cancelled")

    async def _stream(self, job: JobSpec, generation: Generation, state: RunState) -> None:
        checkpoint_at = state.started + self._settings.checkpoint_interval_s
        idle = self._settings.upstream_timeout_s
        this = asyncio.current_task()
        assert this is not None  # noqa: S101 - always inside the queue's task
        watchdog = _IdleWatch(state, this, idle)
        try:
            async for delta in generation.deltas():
                now = time.monotonic()
                state.last_activity = now
                if state.ttft is None:
                    state.ttft = now - state.started
                state.parts.append(delta)
                state.seq += 1
                await self._bus.publish(
                    JobEvent.model_construct(
                        job_id=job.job_id, seq=state.seq, type="running", delta=delta
                    )
                )
                if now >= checkpoint_at:
                    checkpoint_at = now + self._settings.checkpoint_interval_s
                    await self._outcomes.checkpoint(job, state)
        except asyncio.CancelledError as exc:
            if not state.timed_out:
                raise
            this.uncancel()
            raise ProviderTimeout(f"{job.model} sent nothing for {idle:.0f}s") from exc
        finally:
            watchdog.cancel()

    async def fail(
        self,
        job: JobSpec,
        state: RunState,
        error: PatchbayError,
        *,
        status: Literal["failed", "cancelled"] = "failed",
    ) -> None:
        """End a job as failed or cancelled (see `JobOutcomes.fail`)."""
        self._cancelled.pop(job.job_id, None)
        await self._outcomes.fail(job, state, error, status=status)

    async def job(self, user: UserRead, job_id: str) -> JobRead:
        """`user`'s job (see `JobFollower.job`)."""
        return await self.follower.job(user, job_id)

    async def events(
        self, user: UserRead, job_id: str, *, after: int = 0
    ) -> AsyncIterator[list[JobEvent]]:
        """`user`'s job's events after `after` (see `JobFollower.events`)."""
        return await self.follower.events(user, job_id, after=after)

    async def outcome(self, job_id: str) -> JobEvent:
        """Wait for a job's terminal event (see `JobFollower.outcome`)."""
        return await self.follower.outcome(job_id)

    def follow(self, job_id: str, *, after: int = 0) -> AsyncIterator[list[JobEvent]]:
        """Batches of a job's events (see `JobFollower.follow`)."""
        return self.follower.follow(job_id, after=after)


def _claimed_later(job_id: str, claimed: asyncio.Future[int | None]) -> None:
    if not claimed.cancelled() and claimed.exception() is not None:
        logger.warning("job %s: could not mark it running; running it anyway", job_id)


class _IdleWatch:
    """Cancels `task` once the model has sent nothing for `idle_s`: one timer per job, moved on
    lazily (when it fires early it sets itself again for what is left), not one per token."""

    def __init__(self, state: RunState, task: asyncio.Task[None], idle_s: float) -> None:
        self._state, self._task, self._idle_s = state, task, idle_s
        state.last_activity = time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(idle_s, self._check)

    def _check(self) -> None:
        remaining = self._state.last_activity + self._idle_s - time.monotonic()
        if remaining > 0:
            self._timer = asyncio.get_running_loop().call_later(remaining, self._check)
            return
        self._state.timed_out = True
        self._task.cancel()

    def cancel(self) -> None:
        self._timer.cancel()
