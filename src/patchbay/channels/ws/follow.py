"""A connection's jobs: start them (`add`), follow their events (`listen`), `cancel` them.

Each followed job is one task reading the core's event stream for that job. Events are numbered, so
a follower skips what it already sent and a client can resume with `listen` + `after`. Leaving does
not cancel a job: it keeps running and can be listened to again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Protocol

from patchbay.channels.tasks import KeyedTasks
from patchbay.channels.ws.protocol import AddFrame, BadFrame, Frame, bad, failed, to_turn, update
from patchbay.client import CoreClient
from patchbay.errors import NotFound, PatchbayError
from patchbay.schemas.jobs import TERMINAL, JobEvent


class Outlet(Protocol):
    """What a follower needs from its connection."""

    async def send(self, frame: Frame) -> None: ...

    def spawn(self, work: Coroutine[object, object, None]) -> asyncio.Task[None]: ...


class JobFollower:
    """The jobs one connection follows, one task each, keyed by job id."""

    def __init__(self, outlet: Outlet, core: CoreClient, *, key: str) -> None:
        self._outlet = outlet
        self._core = core
        self._key = key
        self._following: KeyedTasks[str] = KeyedTasks()

    async def add(self, frame: AddFrame) -> None:
        """Start a turn, answer `resp_add`, then follow its job on the same stream."""
        try:
            turn = to_turn(frame)
        except BadFrame as exc:
            await self._outlet.send(bad(exc))
            return
        try:
            async with self._core.stream_turn(turn, key=self._key) as (created, batches):
                job_id = created.job_id
                await self._outlet.send({"type": "resp_add", "id": frame.id, "job_id": job_id})
                self._adopt(job_id)
                await self._forward(job_id, batches, 0)
        except PatchbayError as exc:
            await self._outlet.send(
                failed(exc.message, client_id=frame.id, retryable=exc.retryable)
            )

    def listen(self, job_id: str, after: int | None) -> None:
        """Follow a job; with `after`, from just past that event (restarting a follower)."""
        current = self._following.get(job_id)
        if current is not None:
            if after is None:
                return  # already followed: every update is on its way
            current.cancel()
        self._following.put(job_id, self._outlet.spawn(self._listen(job_id, after or 0)))

    async def cancel(self, job_id: str) -> None:
        """Ask the core to cancel a job; whoever follows it then sees `cancelled`."""
        try:
            await self._core.cancel_job(job_id, key=self._key)
        except NotFound:
            await self._outlet.send(failed(f"no job {job_id!r} of yours to cancel", job_id=job_id))
        except PatchbayError as exc:
            await self._outlet.send(failed(exc.message, job_id=job_id, retryable=exc.retryable))

    async def _listen(self, job_id: str, after: int) -> None:
        try:
            async with self._core.job_events(job_id, after=after, key=self._key) as batches:
                await self._forward(job_id, batches, after)
        except NotFound:
            await self._outlet.send(
                failed(f"no job {job_id!r} of yours to listen to", job_id=job_id)
            )
        except PatchbayError as exc:
            await self._outlet.send(failed(exc.message, job_id=job_id, retryable=exc.retryable))

    async def _forward(
        self, job_id: str, batches: AsyncIterator[list[JobEvent]], seen: int
    ) -> None:
        """Send each event past `seen` once, in order, until the job ends."""
        try:
            async for batch in batches:
                for event in batch:
                    if event.seq <= seen:
                        continue
                    seen = event.seq
                    frame = update(event)
                    if frame is not None:
                        await self._outlet.send(frame)
                    if event.terminal:
                        return
        except PatchbayError as exc:
            await self._outlet.send(_lost(job_id, seen, exc.message))
            return
        if await self._ended(job_id):
            return  # its end was at or before `seen`: the client has had it already
        await self._outlet.send(_lost(job_id, seen, "the core ended the job's event stream early"))

    async def _ended(self, job_id: str) -> bool:
        try:
            job = await self._core.job(job_id, key=self._key)
        except PatchbayError:
            return False
        return job.status in TERMINAL

    def _adopt(self, job_id: str) -> None:
        """Count the running `add` task as the follower of the job it started."""
        task = asyncio.current_task()
        if task is not None:
            self._following.put(job_id, task)


def _lost(job_id: str, seen: int, why: str) -> Frame:
    """The stream to the core broke before the job ended: say how to pick it up again."""
    frame = failed(f"{why}; listen again with after={seen}", job_id=job_id, retryable=True)
    frame["after"] = seen
    return frame
