"""Following a job this process has no events of yet: the listener is woken by the job's first
event here, not by looking for it now and then."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from patchbay.core.following import JobFollower
from patchbay.core.hub import Hub
from patchbay.queue.base import JobSpec
from patchbay.queue.memory import MemoryEventBus
from patchbay.schemas.jobs import JobEvent
from patchbay.schemas.turns import TurnCreate
from tests.contract.test_store import admin


async def test_a_listener_waiting_for_a_job_run_elsewhere_hears_its_first_event_at_once(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept: list[JobSpec] = []

    async def keep(spec: JobSpec) -> None:  # queued for a worker elsewhere: nothing runs here
        kept.append(spec)

    monkeypatch.setattr(hub.queue, "submit", keep)
    turn = await hub.turns.start(await admin(hub), TurnCreate(text="hi"))
    bus = MemoryEventBus(retention_s=60, max_finished=10)  # a core that has none of its events
    follower = JobFollower(db=hub.db, bus=bus)
    looked = asyncio.Event()
    stored_end = follower._stored_end

    async def look(job_id: str, after: int) -> list[JobEvent] | None:
        found = await stored_end(job_id, after)
        looked.set()
        return found

    monkeypatch.setattr(follower, "_stored_end", look)
    heard: list[list[JobEvent]] = []

    async def listen() -> None:
        async for batch in follower.follow(turn.job_id):
            heard.append(batch)

    listening = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(looked.wait(), 10)  # the store has no end of it: it waits
        for _ in range(5):
            await asyncio.sleep(0)
        first = JobEvent(job_id=turn.job_id, seq=1, type="queued", model="echo")
        await bus.publish(first)
        for _ in range(20):  # turns of the loop, not time: a look now and then comes too late
            await asyncio.sleep(0)
        assert heard == [[first]]
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
