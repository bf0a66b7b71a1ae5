"""Turns waiting behind their chat's unfinished answer: how the wait for that answer ends."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from patchbay.core import waiting
from patchbay.core.waiting import WaitingTurns
from patchbay.errors import QueueFull, StoreUnavailable
from patchbay.schemas.jobs import JobEvent


class StoreAwayOnce:
    """A job runner whose first look for a job's end finds the store away."""

    def __init__(self) -> None:
        self.looks = 0

    async def outcome(self, job_id: str) -> JobEvent:
        self.looks += 1
        if self.looks == 1:
            raise StoreUnavailable("the database is restarting")
        return JobEvent(job_id=job_id, seq=3, type="done", content="the answer ahead")


async def test_a_store_away_while_the_job_ahead_runs_is_waited_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(waiting, "STORE_RETRY_S", 0.0)
    jobs = StoreAwayOnce()
    none = cast(Any, None)
    turns = WaitingTurns(db=none, jobs=cast(Any, jobs), catalog=none, prompt=none, enqueue=none)
    released: list[str] = []

    async def release(job_id: str) -> None:
        released.append(job_id)

    monkeypatch.setattr(turns, "_release", release)
    turns.behind("ahead", "behind")
    for _ in range(100):
        if released:
            break
        await asyncio.sleep(0.01)
    await turns.close()
    assert released == ["behind"]  # it was left waiting for ever
    assert jobs.looks == 2


async def test_a_turn_the_full_queue_refused_at_its_release_is_failed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    none = cast(Any, None)
    turns = WaitingTurns(db=none, jobs=none, catalog=none, prompt=none, enqueue=none)
    failed: list[str] = []

    async def release(job_id: str) -> None:
        raise QueueFull("too many turns are waiting; try again shortly")  # failed as it was

    async def fail(job_id: str, exc: Exception) -> None:
        failed.append(job_id)

    monkeypatch.setattr(turns, "_release", release)
    monkeypatch.setattr(turns, "_fail", fail)
    turns.behind(None, "behind")
    await asyncio.sleep(0.05)
    await turns.close()
    assert failed == []  # the queue's refusal had failed it: it was failed (and logged) again


async def test_closing_lets_a_release_under_way_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    none = cast(Any, None)
    turns = WaitingTurns(db=none, jobs=none, catalog=none, prompt=none, enqueue=none)
    started, released = asyncio.Event(), []

    async def release(job_id: str) -> None:
        started.set()  # marked queued: it must reach the queue now
        await asyncio.sleep(0.05)
        released.append(job_id)

    monkeypatch.setattr(turns, "_release", release)
    turns.behind(None, "behind")
    await started.wait()
    await turns.close()
    assert released == ["behind"]
