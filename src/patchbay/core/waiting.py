"""Turns that wait behind their chat's unfinished answer (`TurnCreate.queue_behind`).

A chat channel (Telegram, XMPP) answers a chat's messages in order. Its next message used to wait
in the channel's memory until the answer before it had ended, because a job's history is taken
when its turn is stored; a channel restart lost it. Now the turn is stored at once, its job
`waiting` with the options it runs with, and queued when the job ahead of it ends, with a history
read from the store then (the answer ahead included). The core that stored it releases it; on
RabbitMQ every core also waits for the waiting jobs of the others, which it looks for as it
starts and every `SWEEP_S` (their cores may have stopped): a job is released once, by whoever
moves it from `waiting` to `queued` first. A release refused for now (the queue full, the store or
RabbitMQ away) leaves the job waiting and is tried again, backing off, for
`JobSettings.release_retry_s`; then the job fails, saying why. With the in-process queue a
restart fails them, as it does every job the earlier run left.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from sqlalchemy.engine import Connection

from patchbay.backoff import Backoff
from patchbay.core.attachments import Said
from patchbay.core.outcomes import kept_error
from patchbay.core.placement import said_in
from patchbay.core.turn_deps import TurnDeps
from patchbay.errors import ChatNotFound, JobNotFound, PatchbayError, StoreUnavailable
from patchbay.queue.base import JobSpec
from patchbay.schemas.chats import MessageRead
from patchbay.schemas.jobs import ErrorInfo, JobEvent
from patchbay.store import chats as chat_rows
from patchbay.store import jobs as job_rows
from patchbay.store import users as user_rows

logger = logging.getLogger(__name__)

STORE_RETRY_S = 1.0  # how soon to look again for the end of a job ahead, when the store was away
RESUME_GRACE_S = 2.0  # how long a core that starts leaves another's waiting job to that core
# How often a core on RabbitMQ looks for waiting jobs it does not wait for: those of a core that
# stopped while the others run, which would wait until a core starts otherwise.
SWEEP_S = 30.0
# A release refused for now is tried again after a second, then twice as late each time, up to
# 15 s: soon enough that a queue with room again is used, rarely enough that many turns waiting on
# a full queue do not add much to its load.
RELEASE_RETRY = Backoff(1.0, cap_s=15.0)
ENDED_SEQ = 2  # the number of a waiting job's end: `queued` was its only event before


@dataclass(frozen=True, slots=True)
class _Ready:
    """A waiting job whose turn may be answered now, and what it runs with."""

    user_id: str
    model: str
    answer: MessageRead
    history: list[Said]
    prefix_hash: str
    options: dict[str, object]
    stream: bool


class WaitingTurns:
    def __init__(self, deps: TurnDeps) -> None:
        self._deps = deps
        self._tasks: dict[str, asyncio.Task[None]] = {}  # by job: the wait for it to be queued
        self._sweeper: asyncio.Task[None] | None = None
        self._releasing: dict[str, asyncio.Future[None]] = {}  # by job: see `_queue_job`
        self._stopped: set[str] = set()  # jobs of those cancelled meanwhile: see `stopped`

    def behind(self, ahead: str | None, job_id: str, *, grace_s: float = 0.0) -> None:
        """Queue the waiting job `job_id` once the job `ahead` has ended (and `grace_s` more)."""
        if job_id in self._tasks:
            return  # waited for here already
        task = asyncio.create_task(self._release_after(ahead, job_id, grace_s))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))

    async def resume(self) -> None:
        """Wait for every waiting job in the store too, now (their cores may have stopped) and
        every `SWEEP_S` (a core may stop while this one runs): with many cores (RabbitMQ)."""
        await self._take_up()
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def _take_up(self) -> None:
        """Wait for the waiting jobs in the store this core does not wait for already."""
        async with self._deps.db.connect() as conn:
            waiting = await conn.run_sync(job_rows.waiting_jobs)
        others = [job_id for job_id in waiting if job_id not in self._tasks]
        for job_id in others:
            # The core that stored it, if it still runs, queues it as soon as the job ahead ends:
            # this one comes a moment later, so the two seldom both make its prompt. The job
            # ahead, if one still runs, is found at the release, and waited for then.
            self.behind(None, job_id, grace_s=RESUME_GRACE_S)
        if others:
            logger.info("waiting too for %d jobs behind others, stored by other cores", len(others))

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                await self._take_up()
            except PatchbayError as exc:  # the store away: looked for again next time
                logger.warning("could not look for the waiting jobs of others: %s", exc.message)

    async def stopped(self, job_id: str) -> None:
        """Told by a cancel that stopped the job in the store: a release of it under way here
        does not queue it then, unless it has already; returns once that release is over, so
        that the cancel finds the job in the queue if it is there."""
        release = self._releasing.get(job_id)
        if release is not None:
            self._stopped.add(job_id)
            await asyncio.wait([release])

    async def close(self) -> None:
        """Stop waiting: the jobs stay waiting in the store, for the other cores (RabbitMQ) or
        the next to start. A release under way is finished first: stopped between marking its
        job queued and queueing it, it would leave the job queued in no queue, for good."""
        tasks = [*self._tasks.values(), *([self._sweeper] if self._sweeper else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._releasing.values(), return_exceptions=True)

    async def _release_after(self, ahead: str | None, job_id: str, grace_s: float) -> None:
        """Queue the job once every job ahead of it has ended; end it if it cannot be queued."""
        try:
            while True:
                if ahead is not None:
                    await self._ended(ahead)
                await asyncio.sleep(grace_s)
                ahead = await self._release_retrying(job_id)
                if ahead is None:
                    return
        except ChatNotFound as exc:
            await self._tell_failed(job_id, exc)
        except PatchbayError as exc:  # its model gone, a queue full for too long: said why
            await self._fail(job_id, exc)
        except Exception as exc:  # a bug: the job must still end
            logger.exception("job %s: could not queue it", job_id)
            await self._fail(job_id, PatchbayError(f"could not queue it: {exc!r}"[:500]))

    async def _ended(self, ahead: str) -> None:
        """Return once the job `ahead` has ended, waiting out a store that is briefly away (its
        end is looked for there): the job behind it would wait for ever otherwise."""
        while True:
            try:
                await self._deps.jobs.outcome(ahead)
                return
            except JobNotFound:  # gone with its chat: nothing to wait for
                return
            except StoreUnavailable:
                logger.warning("job %s: the database is away; waiting for it again", ahead)
                await asyncio.sleep(STORE_RETRY_S)

    async def _release_retrying(self, job_id: str) -> str | None:
        """`_release`, tried again while it is refused for now (the queue full, the store or
        RabbitMQ away), backing off, for `release_retry_s`; past that its error says for how
        long. The job waits meanwhile, in the store: it can be cancelled or deleted with its chat
        as any waiting job, and a core that stops leaves it to the next."""
        retry_s = self._deps.settings.release_retry_s
        waits = RELEASE_RETRY.within(retry_s)
        while True:
            try:
                return await self._release(job_id)
            except PatchbayError as exc:
                if not exc.retryable:
                    raise
                wait = next(waits, None)
                if wait is None:
                    raise type(exc)(
                        f"could not queue it for {retry_s:g} s after the answer before "
                        f"it ended: {exc.message}"
                    ) from exc
                logger.warning(
                    "job %s: could not queue it yet (%s); trying again in %.1f s",
                    job_id,
                    exc.message,
                    wait,
                )
                await asyncio.sleep(wait)

    async def _release(self, job_id: str) -> str | None:
        """Queue the job; or, while an answer before its question is still coming (the one it
        waited for was itself waiting, and cancelled), the job of that answer, to wait for."""
        async with self._deps.db.connect() as conn:
            ready = await conn.run_sync(_ready, job_id)
            if ready is None or isinstance(ready, str):
                return ready
            user = await user_rows.get_user(conn, ready.user_id)
        template = ready.answer.assistant
        targets = await self._deps.catalog.targets(ready.model, template)
        spec = await self._deps.job_spec(
            user,
            targets,
            ready.history,
            job_id=job_id,
            chat_id=ready.answer.chat_id,
            answer_id=ready.answer.id,
            model=ready.model,
            prefix_hash=ready.prefix_hash,
            options=ready.options,
            stream=ready.stream,
            template=template,
        )
        release = asyncio.ensure_future(self._queue_job(spec))
        self._releasing[job_id] = release
        release.add_done_callback(lambda _: self._released(job_id))
        await asyncio.shield(release)
        return None

    def _released(self, job_id: str) -> None:
        self._releasing.pop(job_id, None)
        self._stopped.discard(job_id)

    async def _queue_job(self, spec: JobSpec) -> None:
        """Mark the job queued, then queue it; the queue refusing it, it waits again.

        Runs to its end even when the core stops meanwhile (see `close`). A cancel that comes
        between the two finds the job marked queued and in no queue, and says so (`stopped`):
        the job is not queued then. (The in-process queue, which runs a job without looking in
        the store first, would run it; a RabbitMQ worker would skip it.)
        """
        if not await self._deps.db.write(partial(_mark_queued, job_id=spec.job_id)):
            return  # cancelled while its prompt was made, or released by another core
        if spec.job_id in self._stopped:
            logger.info("job %s: cancelled as it was being queued", spec.job_id)
            return
        try:
            await self._deps.queue.submit(spec)
        except Exception:
            await self._put_back(spec.job_id)
            raise

    async def _put_back(self, job_id: str) -> None:
        """Make a job the queue did not take waiting again, to be tried again or failed."""
        try:
            await self._deps.db.write(partial(job_rows.put_back_waiting, job_id=job_id))
        except PatchbayError:
            logger.exception("job %s: the queue did not take it, and it is left queued", job_id)

    async def _tell_failed(
        self, job_id: str, error: PatchbayError, model: str | None = None
    ) -> None:
        """End the job for its listeners (and the turns waiting behind it): nothing else would,
        for one deleted with its chat while it waited, or one that could not be queued."""
        info = ErrorInfo(code=error.code, message=error.message, retryable=error.retryable)
        await self._deps.jobs.publish(
            JobEvent(
                job_id=job_id, seq=ENDED_SEQ, type="failed", content="", error=info, model=model
            )
        )

    async def _fail(self, job_id: str, error: PatchbayError) -> None:
        """End a job that could not be queued (its model gone, the queue full for too long), so
        whoever waits for its answer hears why instead of waiting for ever; a job cancelled
        meanwhile stays cancelled."""
        try:
            model = await self._deps.db.write(partial(_fail_waiting, job_id=job_id, error=error))
        except Exception:
            logger.exception("job %s: could not mark it failed", job_id)
            return
        if model is None:
            return
        await self._tell_failed(job_id, error, model)
        logger.warning("job %s failed: %s: %s", job_id, error.code, error.message)


def _ready(conn: Connection, job_id: str) -> _Ready | str | None:
    """What the waiting job runs with; or the job still unfinished ahead of it; or None when it
    is not waiting any more."""
    found = job_rows.find_job(conn, job_id)
    if found is None:
        raise ChatNotFound("its chat was deleted while it waited; it is not answered")
    job, user_id, _ = found
    if job.status != "waiting":
        return None  # cancelled while it waited, or released by another core
    answer = chat_rows.find_message(conn, job.message_id)
    if answer is None or answer.parent_id is None:
        raise JobNotFound(f"job {job_id} lost its answer")
    branch = chat_rows.branch(conn, chat_id=answer.chat_id, leaf_id=answer.parent_id)
    ahead = job_rows.last_unfinished_of(conn, [m.id for m in branch if m.role == "assistant"])
    if ahead is not None:
        return ahead
    options, stream = job_rows.kept_options(conn, job_id)
    prefix = chat_rows.prefix_hash_of(conn, answer.parent_id) or ""
    return _Ready(user_id, job.model, answer, said_in(branch), prefix, options, stream)


def _mark_queued(conn: Connection, *, job_id: str) -> bool:
    """Move the job from waiting to queued; False when it is not waiting any more. An ended
    job is never unfinished again, so what `_ready` found ahead of it still holds."""
    if job_rows.release_waiting(conn, job_id):
        return True
    if job_rows.find_job(conn, job_id) is None:
        raise ChatNotFound("its chat was deleted while it waited; it is not answered")
    return False


def _fail_waiting(conn: Connection, *, job_id: str, error: PatchbayError) -> str | None:
    """Mark a waiting job and its answer failed: its model, or None when it is not waiting."""
    failed = job_rows.fail_waiting(conn, job_id, reason=error.message, last_seq=ENDED_SEQ)
    if failed is None:
        return None
    message_id, model = failed
    found = chat_rows.told_message(conn, message_id)
    metadata = {} if found is None else found[1]
    metadata["error"] = kept_error(error)
    chat_rows.update_message(
        conn,
        message_id,
        status="failed",
        error=error.message,
        metadata=metadata,
        updated_at=datetime.now(UTC),
    )
    return model
