"""Turns waiting behind their chat's unfinished answer: how the wait for that answer ends, and
how a release refused for now is tried again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest

from patchbay.backoff import Backoff
from patchbay.config import JobSettings
from patchbay.core import waiting
from patchbay.core.turn_deps import TurnDeps
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
    settings = JobSettings(release_retry_s=retry_s)
    return WaitingTurns(TurnDeps(none, none, none, cast(Any, jobs), settings, none))


class Releases:
    """Stands in for the releases of `turns`: its n-th try raises `refusal(n)` (None: it goes
    through); what it fails is kept."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        turns: WaitingTurns,
        refusal: Callable[[int], PatchbayError | None],
    ) -> None:
        self.refusal = refusal
        self.tries: list[str] = []
        self.failed: list[PatchbayError] = []
        monkeypatch.setattr(turns, "_release", self._release)
        monkeypatch.setattr(turns, "_fail", self._fail)

    async def _release(self, job_id: str) -> None:
        self.tries.append(job_id)
        refused = self.refusal(len(self.tries))
        if refused is not None:
            raise refused

    async def _fail(self, job_id: str, error: PatchbayError) -> None:
        self.failed.append(error)


async def until(condition: Any, timeout_s: float = 2.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("it did not happen in time")


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "RELEASE_RETRY", Backoff(0.01, cap_s=0.02))


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
    full = QueueFull("too many turns are waiting; try again shortly")
    releases = Releases(monkeypatch, turns, lambda n: full if n < 3 else None)
    turns.behind(None, "behind")
    await until(lambda: len(releases.tries) == 3)
    await turns.close()
    assert (
        releases.failed == []
    )  # it was failed at the first refusal, though its turn had been accepted


async def test_a_turn_the_queue_keeps_refusing_fails_once_its_time_is_out_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    turns = waiting_turns(retry_s=0.1)
    releases = Releases(
        monkeypatch, turns, lambda _: QueueFull("3 jobs are waiting; try again shortly")
    )
    turns.behind(None, "behind")
    await until(lambda: releases.failed)
    await turns.close()
    (error,) = releases.failed
    assert isinstance(error, QueueFull) and error.retryable
    assert error.message == (
        "could not queue it for 0.1 s after the answer before it ended: "
        "3 jobs are waiting; try again shortly"
    )
    assert len(releases.tries) > 2


async def test_a_turn_that_can_never_be_queued_fails_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    turns = waiting_turns()
    releases = Releases(monkeypatch, turns, lambda _: ModelNotFound("no model named 'gone'"))
    turns.behind(None, "behind")
    await until(lambda: releases.failed)
    await turns.close()
    assert releases.tries == ["behind"]
    assert [e.message for e in releases.failed] == ["no model named 'gone'"]


async def test_closing_stops_a_turn_waiting_to_be_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(waiting, "RELEASE_RETRY", Backoff(30.0))
    turns = waiting_turns()
    full = QueueFull("too many turns are waiting; try again shortly")
    releases = Releases(monkeypatch, turns, lambda _: full)
    turns.behind(None, "behind")
    await until(lambda: releases.tries)
    await asyncio.wait_for(turns.close(), 1)  # not after its back-off
    assert releases.failed == []  # it waits in the store, for the next core
