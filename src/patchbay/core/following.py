"""Following a job's events for its listeners: replayed, then live from the event bus; from the
store for a job whose events this process has none of (ended long ago, or run by another process)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

from patchbay.errors import JobNotFound
from patchbay.queue.base import EventBus
from patchbay.queue.memory import caught_up
from patchbay.schemas.jobs import TERMINAL, ErrorInfo, JobEvent, JobRead
from patchbay.schemas.users import UserRead
from patchbay.store import chats as chat_rows
from patchbay.store import jobs as job_rows
from patchbay.store.db import Database

# Following a job this process has no events of yet: how often to look in the store for its
# outcome meanwhile (the bus wakes the listener at its first event).
STORE_LOOK_S = 2.0
# A job run by another process that has sent nothing for this long is looked for in the store:
# its events may have been lost on the way (a broker that dropped this core's queue while it was
# away), and one that ended meanwhile would be waited for for ever.
SILENT_LOOK_S = 10.0


class JobFollower:
    """Serves jobs' events to their listeners, from the event bus and the store."""

    def __init__(self, *, db: Database, bus: EventBus, exclusive: bool = False) -> None:
        """`exclusive`: the jobs come from an in-process queue, so their events are made here."""
        self._db = db
        self._bus = bus
        self._exclusive = exclusive

    async def job(self, user: UserRead, job_id: str) -> JobRead:
        """`user`'s job; `JobNotFound` also when it is another user's."""
        async with self._db.connect() as conn:
            found = await conn.run_sync(job_rows.find_job, job_id)
        if found is None or found[1] != user.id:
            raise JobNotFound(f"no job with id {job_id!r}")
        return found[0]

    async def events(
        self, user: UserRead, job_id: str, *, after: int = 0
    ) -> AsyncIterator[list[JobEvent]]:
        """A job's events after `after`: replayed, then live; from the store once it is long done."""
        await self.job(user, job_id)
        return self.follow(job_id, after=after)

    async def outcome(self, job_id: str) -> JobEvent:
        """Wait for a job's terminal event (no ownership check)."""
        outcome = None
        async for batch in self.follow(job_id):
            outcome = batch[-1]
        if outcome is None or outcome.type not in TERMINAL:
            raise JobNotFound(f"job {job_id} ended without an outcome")
        return outcome

    async def follow(self, job_id: str, *, after: int = 0) -> AsyncIterator[list[JobEvent]]:
        """Batches of events of a job the caller may see (no ownership check).

        A job whose events this process has none of yet, queued or running in another process
        (this one started after it did), is waited for: its next events come here too. The
        store is looked at now and then meanwhile, for a job that ends without another event.
        """
        while not self._bus.knows(job_id):
            stored = await self._stored_end(job_id, after)
            if stored is not None:
                if stored:
                    yield stored
                return
            await self._bus.until_known(job_id, STORE_LOOK_S)
        if self._exclusive:  # its events are made here: none is lost on the way
            async for batch in self._bus.subscribe(job_id, after=after):
                yield batch
            return
        async for batch in self._heard_or_stored(job_id, after):
            yield batch

    async def _heard_or_stored(self, job_id: str, after: int) -> AsyncIterator[list[JobEvent]]:
        """The bus's batches of a job another process runs; while none comes for
        `SILENT_LOOK_S`, the store is looked at, and a job that ended there ends here too."""
        batches = aiter(self._bus.subscribe(job_id, after=after))
        pending: asyncio.Future[list[JobEvent]] | None = None
        try:
            while True:
                pending = pending or asyncio.ensure_future(anext(batches))
                done, _ = await asyncio.wait({pending}, timeout=SILENT_LOOK_S)
                if not done:
                    stored = await self._stored_end(job_id, after)
                    if stored is not None:
                        if stored:
                            yield stored
                        return
                    continue
                try:
                    batch = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                after = batch[-1].seq
                yield batch
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await pending
            if isinstance(batches, AsyncGenerator):
                await batches.aclose()

    async def _stored_end(self, job_id: str, after: int) -> list[JobEvent] | None:
        """What a listener that saw the events up to `after` is still owed of a job that ended
        and whose events are no longer in memory (None: it has not ended): from the store, its
        outcome, after its whole answer as one token when the listener may not have it all (as
        the in-memory bus catches a listener up)."""
        outcome = await self._stored_outcome(job_id, after)
        if outcome is None:
            return None
        if outcome.seq <= after:
            return []
        if outcome.seq == after + 1:  # it had every event but this one (or none has a number)
            return [outcome]
        return caught_up(outcome, after)

    async def _stored_outcome(self, job_id: str, after: int) -> JobEvent | None:
        """The terminal event of a job whose events are no longer in memory, from the store.

        Its number is the one the live event had, so a client that saw it gets nothing twice; a job
        that ended without one (failed by recovery) ends with the next number the client expects.
        """
        async with self._db.connect() as conn:
            found = await conn.run_sync(job_rows.find_job, job_id)
            answer = (
                None
                if found is None
                else await conn.run_sync(chat_rows.told_message, found[0].message_id)
            )
        if found is None or answer is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        message, told = answer
        job, _owner, last_seq = found
        if last_seq is None and job.status not in TERMINAL:
            return None  # queued or running in a process whose events this one cannot see
        seq = after + 1 if last_seq is None else last_seq
        if job.status == "done":
            return JobEvent(
                job_id=job_id,
                seq=seq,
                type="done",
                content=message.content,
                finish_reason=str(told.get("finish_reason") or "stop"),
                usage=message.usage,
                timings=message.timings,
                model=job.model,
            )
        reason = job.error or "this job's events are gone; its process stopped"
        said = told.get("error")
        error: dict[str, object] = said if isinstance(said, dict) else {}
        return JobEvent(
            job_id=job_id,
            seq=seq,
            type="cancelled" if job.status == "cancelled" else "failed",
            content=message.content,
            error=ErrorInfo(
                code=str(error.get("code") or "job_failed"),
                message=reason,
                retryable=bool(error.get("retryable")),
            ),
            model=job.model,
        )
