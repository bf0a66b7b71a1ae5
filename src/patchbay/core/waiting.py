"""Turns that wait behind their chat's unfinished answer (`TurnCreate.queue_behind`).

A chat channel (Telegram, XMPP) answers a chat's messages in order. Its next message used to wait
in the channel's memory until the answer before it had ended, because a job's history is taken
when its turn is stored; a channel restart lost it. Now the turn is stored at once, its job
`waiting` with the options it runs with, and queued when the job ahead of it ends, with a history
read from the store then (the answer ahead included). The core that stored it releases it; one that starts finds the waiting jobs
of the others (RabbitMQ: they may have stopped) and releases them too: a job is released once,
by whoever moves it from `waiting` to `queued` first. With the in-process queue a restart fails
them, as it does every job the earlier run left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy.engine import Connection

from patchbay.core.attachments import Said
from patchbay.core.catalog import Catalog
from patchbay.core.jobs import JobRunner, RunState
from patchbay.core.llm.registry import ModelTarget
from patchbay.core.placement import said_in
from patchbay.errors import (
    ChatNotFound,
    JobNotFound,
    PatchbayError,
    QueueFull,
    StoreUnavailable,
)
from patchbay.queue.base import JobSpec, PromptMessage
from patchbay.schemas.chats import MessageRead
from patchbay.schemas.jobs import ErrorInfo, JobEvent
from patchbay.schemas.users import UserRead
from patchbay.store import chats as chat_rows
from patchbay.store import jobs as job_rows
from patchbay.store import users as user_rows
from patchbay.store.db import Database

logger = logging.getLogger(__name__)

STORE_RETRY_S = 1.0  # how soon to look again for the end of a job ahead, when the store was away
RESUME_GRACE_S = 2.0  # how long a core that starts leaves another's waiting job to that core

Prompt = Callable[[UserRead, list[ModelTarget], list[Said]], Awaitable[tuple[PromptMessage, ...]]]
Enqueue = Callable[[JobSpec, datetime], Awaitable[None]]
# owner, model, answer, history, prefix hash, options, stream
Taken = tuple[str, str, MessageRead, list[Said], str, dict[str, object], bool]


class WaitingTurns:
    def __init__(
        self, *, db: Database, jobs: JobRunner, catalog: Catalog, prompt: Prompt, enqueue: Enqueue
    ) -> None:
        self._db = db
        self._jobs = jobs
        self._catalog = catalog
        self._prompt = prompt
        self._enqueue = enqueue
        self._tasks: set[asyncio.Task[None]] = set()
        self._releasing: set[asyncio.Future[str | None]] = set()

    def behind(self, ahead: str | None, job_id: str, *, grace_s: float = 0.0) -> None:
        """Queue the waiting job `job_id` once the job `ahead` has ended (and `grace_s` more)."""
        task = asyncio.create_task(self._release_after(ahead, job_id, grace_s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resume(self) -> None:
        """Wait again for every waiting job in the store (their cores may have stopped)."""
        async with self._db.connect() as conn:
            waiting = await conn.run_sync(job_rows.waiting_jobs)
        for job_id in waiting:
            # The core that stored it, if it still runs, queues it as soon as the job ahead ends:
            # this one comes a moment later, so the two seldom both make its prompt. The job
            # ahead, if one still runs, is found at the release, and waited for then.
            self.behind(None, job_id, grace_s=RESUME_GRACE_S)
        if waiting:
            logger.info("waiting again for %d jobs behind others", len(waiting))

    async def close(self) -> None:
        """Stop waiting; a release under way is finished first: stopped between marking its
        job queued and queueing it, it would leave the job queued in no queue, for good."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._releasing, return_exceptions=True)

    async def _release_after(self, ahead: str | None, job_id: str, grace_s: float) -> None:
        while True:
            if ahead is not None:
                await self._ended(ahead)
            await asyncio.sleep(grace_s)
            release = asyncio.ensure_future(self._release(job_id))
            self._releasing.add(release)
            release.add_done_callback(self._releasing.discard)
            try:
                ahead = await asyncio.shield(release)
            except ChatNotFound as exc:
                await self._tell_gone(job_id, exc)
                return
            except QueueFull:  # ended failed already, saying so, as any turn the queue refuses
                logger.warning("job %s: the queue was full once it could start", job_id)
                return
            except Exception as exc:
                logger.exception("job %s: could not start it after job %s", job_id, ahead)
                await self._fail(job_id, exc)
                return
            if ahead is None:
                return

    async def _ended(self, ahead: str) -> None:
        """Return once the job `ahead` has ended, waiting out a store that is briefly away (its
        end is looked for there): the job behind it would wait for ever otherwise."""
        while True:
            try:
                await self._jobs.outcome(ahead)
                return
            except JobNotFound:  # gone with its chat: nothing to wait for
                return
            except StoreUnavailable:
                logger.warning("job %s: the database is away; waiting for it again", ahead)
                await asyncio.sleep(STORE_RETRY_S)

    async def _release(self, job_id: str) -> str | None:
        """Queue the job; or, while an answer before its question is still coming (the one it
        waited for was itself waiting, and cancelled), the job of that answer, to wait for."""

        taken = await self._db.write(lambda conn: _take(conn, job_id))
        if taken is None or isinstance(taken, str):
            return taken
        user_id, model, answer, history, prefix, options, stream = taken
        async with self._db.connect() as conn:
            user = await user_rows.get_user(conn, user_id)
        template = answer.assistant
        targets = await self._catalog.targets(model, template)
        spec = JobSpec(
            job_id=job_id,
            user_id=user_id,
            chat_id=answer.chat_id,
            message_id=answer.id,
            model=model,
            messages=await self._prompt(user, targets, history),
            prefix_hash=prefix,
            options=options,
            stream=stream,
            template=template,
        )
        await self._enqueue(spec, datetime.now(UTC))
        return None

    async def _tell_gone(self, job_id: str, exc: ChatNotFound) -> None:
        """End, for its listeners (and the turns waiting behind it), a job deleted with its chat
        while it waited: nothing else would."""
        error = ErrorInfo(code=exc.code, message=exc.message)
        told = 2  # the number after its `queued`, the only event it had
        await self._jobs.publish(
            JobEvent(job_id=job_id, seq=told, type="failed", content="", error=error)
        )

    async def _fail(self, job_id: str, exc: Exception) -> None:
        """End a job that could not be queued (its model gone, the store away), so whoever
        waits for its answer hears why instead of waiting for ever."""
        try:
            async with self._db.connect() as conn:
                found = await conn.run_sync(job_rows.find_job, job_id)
            if found is None:
                return
            job = found[0]
            spec = JobSpec(
                job_id=job_id,
                user_id=found[1],
                chat_id=job.chat_id,
                message_id=job.message_id,
                model=job.model,
                messages=(),
                prefix_hash="",
            )
            error = exc if isinstance(exc, PatchbayError) else PatchbayError(f"{exc!r}"[:500])
            state = RunState(started=time.monotonic(), started_at=datetime.now(UTC))
            await self._jobs.fail(spec, state, error)
        except Exception:
            logger.exception("job %s: could not mark it failed", job_id)


def _take(conn: Connection, job_id: str) -> Taken | str | None:
    """Move the job from waiting to queued: its owner, model, answer, history, prefix hash and
    what it runs with; or the job still unfinished ahead of it; or None when it is not waiting
    any more."""
    found = job_rows.find_job(conn, job_id)
    if found is None:
        raise ChatNotFound("its chat was deleted while it waited; it is not answered")
    if found[0].status != "waiting":
        return None  # cancelled while it waited, or released by another core
    answer = chat_rows.find_message(conn, found[0].message_id)
    if answer is None or answer.parent_id is None:
        raise JobNotFound(f"job {job_id} lost its answer")
    branch = chat_rows.branch(conn, chat_id=answer.chat_id, leaf_id=answer.parent_id)
    answers = [m.id for m in branch if m.role == "assistant"]
    ahead = job_rows.last_unfinished_of(conn, answers)
    if ahead is not None:
        return ahead
    if not job_rows.release_waiting(conn, job_id):
        return None
    history = said_in(branch)
    prefix = chat_rows.prefix_hash_of(conn, answer.parent_id) or ""
    options, stream = job_rows.kept_options(conn, job_id)
    return found[1], found[0].model, answer, history, prefix, options, stream
