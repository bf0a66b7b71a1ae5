"""Turns waiting behind their chat's unfinished answer: how the wait for that answer ends, and
how a release refused for now is tried again."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from patchbay.core import waiting
from patchbay.core.waiting import WaitingTurns
from patchbay.errors import ModelNotFound, PatchbayError, QueueFull, StoreUnavailable
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


def waiting_turns(*, jobs: object = None, retry_s: float = 60.0) -> WaitingTurns:
    none = cast(Any, None)
    return WaitingTurns(
        db=none, jobs=cast(Any, jobs), catalog=none, prompt=none, queue=none, retry_s=retry_s
    )


async def until(condition: Any, timeout_s: float = 2.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("it did not happen in time")


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "RETRY_FIRST_S", 0.01)
    monkeypatch.setattr(waiting, "RETRY_MAX_S", 0.02)


async def test_a_store_away_while_the_job_ahead_runs_is_waited_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(waiting, "STORE_RETRY_S", 0.0)
    jobs = StoreAwayOnce()
    turns = waiting_turns(jobs=jobs)
    released: list[str] = []

    async def release(job_id: str) -> None:
        released.append(job_id)

    monkeypatch.setattr(turns, "_release", release)
    turns.behind("ahead", "behind")
    await until(lambda: released)
    await turns.close()
    assert released == ["behind"]  # it was left waiting for ever
    assert jobs.looks == 2


async def test_a_turn_the_full_queue_refuses_at_its_release_is_tried_again_until_it_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    turns = waiting_turns()
    tries: list[str] = []
    failed: list[PatchbayError] = []

    async def release(job_id: str) -> None:
        tries.append(job_id)
        if len(tries) < 3:
            raise QueueFull("too many turns are waiting; try again shortly")

    async def fail(job_id: str, error: PatchbayError) -> None:
        failed.append(error)

    monkeypatch.setattr(turns, "_release", release)
    monkeypatch.setattr(turns, "_fail", fail)
    turns.behind(None, "behind")
    await until(lambda: len(tries) == 3)
    await turns.close()
    assert failed == []  # it was failed at the first refusal, though its turn had been accepted


async def test_a_turn_the_queue_keeps_refusing_fails_once_its_time_is_out_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    turns = waiting_turns(retry_s=0.1)
    tries: list[str] = []
    failed: list[PatchbayError] = []

    async def release(job_id: str) -> None:
        tries.append(job_id)
        raise QueueFull("3 jobs are waiting; try again shortly")

    async def fail(job_id: str, error: PatchbayError) -> None:
        failed.append(error)

    monkeypatch.setattr(turns, "_release", release)
    monkeypatch.setattr(turns, "_fail", fail)
    turns.behind(None, "behind")
    await until(lambda: failed)
    await turns.close()
    (error,) = failed
    assert isinstance(error, QueueFull) and error.retryable
    assert error.message == (
        "could not queue it for 0.1 s after the answer before it ended: "
        "3 jobs are waiting; try again shortly"
    )
    assert len(tries) > 2


async def test_a_turn_that_can_never_be_queued_fails_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    turns = waiting_turns()
    tries: list[str] = []
    failed: list[PatchbayError] = []

    async def release(job_id: str) -> None:
        tries.append(job_id)
        raise ModelNotFound("no model named 'gone'")

    async def fail(job_id: str, error: PatchbayError) -> None:
        failed.append(error)

    monkeypatch.setattr(turns, "_release", release)
    monkeypatch.setattr(turns, "_fail", fail)
    turns.behind(None, "behind")
    await until(lambda: failed)
    await turns.close()
    assert tries == ["behind"]
    assert [e.message for e in failed] == ["no model named 'gone'"]


async def test_closing_stops_a_turn_waiting_to_be_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(waiting, "RETRY_FIRST_S", 30.0)
    turns = waiting_turns()
    tries: list[str] = []
    failed: list[PatchbayError] = []

    async def release(job_id: str) -> None:
        tries.append(job_id)
        raise QueueFull("too many turns are waiting; try again shortly")

    async def fail(job_id: str, error: PatchbayError) -> None:
        failed.append(error)

    monkeypatch.setattr(turns, "_release", release)
    monkeypatch.setattr(turns, "_fail", fail)
    turns.behind(None, "behind")
    await until(lambda: tries)
    await asyncio.wait_for(turns.close(), 1)  # not after its back-off
    assert failed == []  # it waits in the store, for the next core
