"""A finished job's outcome stored while the database is away: tried again, backing off, for
`store_retry_s`; told to its listeners all the same."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from patchbay.backoff import Backoff
from patchbay.config import JobSettings
from patchbay.core import outcomes
from patchbay.core.outcomes import JobOutcomes, RunState
from patchbay.errors import ModelNotFound, StoreUnavailable
from patchbay.queue.base import JobSpec
from patchbay.schemas.jobs import JobEvent


class AwayStore:
    """A database away for its first `away` writes."""

    def __init__(self, away: int) -> None:
        self.away = away
        self.writes = 0

    def write_soon(self, *_: object, **__: object) -> None:
        return None

    async def write(self, _: object) -> None:
        self.writes += 1
        if self.writes <= self.away:
            raise StoreUnavailable("the database is away")


class Bus:
    def __init__(self) -> None:
        self.told: list[JobEvent] = []

    async def publish(self, event: JobEvent) -> None:
        self.told.append(event)


SPEC = JobSpec(
    job_id="j1",
    user_id="u1",
    chat_id="c1",
    message_id="m1",
    model="echo",
    messages=(),
    prefix_hash="",
)


def job_outcomes(store: AwayStore, bus: Bus, *, store_retry_s: float) -> JobOutcomes:
    settings = JobSettings(store_retry_s=store_retry_s)
    return JobOutcomes(
        db=cast(Any, store), bus=cast(Any, bus), registry=cast(Any, None), settings=settings
    )


async def fail(outcomes_: JobOutcomes) -> None:
    state = RunState(started=time.monotonic(), started_at=datetime.now(UTC))
    await outcomes_.fail(SPEC, state, ModelNotFound("no model named 'echo'"))


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outcomes, "STORE_RETRY", Backoff(0.01, cap_s=0.02))


async def test_an_outcome_is_stored_once_the_database_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, bus = AwayStore(away=3), Bus()
    with caplog.at_level(logging.WARNING, logger="patchbay.core.outcomes"):
        await fail(job_outcomes(store, bus, store_retry_s=30.0))
    assert store.writes == 4
    assert sum("storing again" in r.getMessage() for r in caplog.records) == 3
    assert [e.type for e in bus.told] == ["failed"]


async def test_an_outcome_the_database_never_takes_is_told_all_the_same(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, bus = AwayStore(away=10_000), Bus()
    with caplog.at_level(logging.ERROR, logger="patchbay.core.outcomes"):
        await fail(job_outcomes(store, bus, store_retry_s=0.2))
    assert 2 <= store.writes < 10_000
    assert "the database stayed away" in caplog.text
    assert [e.type for e in bus.told] == ["failed"]


async def test_no_wait_that_would_end_past_the_limit_is_begun() -> None:
    store, bus = AwayStore(away=10_000), Bus()
    await fail(job_outcomes(store, bus, store_retry_s=0.005))  # shorter than the first wait
    assert store.writes == 1
