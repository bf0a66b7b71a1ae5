"""Turns under way per call: an answer that outlasts one webhook is picked up by the next."""

from __future__ import annotations

import asyncio

import pytest

from patchbay.channels.voice.calls import CallTurns
from patchbay.errors import ProviderUnavailable
from patchbay.schemas.jobs import JobEvent


async def test_a_turn_outlasting_the_webhook_is_picked_up_later() -> None:
    calls = CallTurns()
    release = asyncio.Event()
    result = JobEvent(job_id="j", seq=2, type="done", content="hi")

    async def turn() -> JobEvent:
        await release.wait()
        return result

    calls.start("CA1", turn())
    assert await calls.wait("CA1", 0.01) is None
    release.set()
    assert await calls.wait("CA1", 1) == result
    assert not calls.under_way("CA1")


async def test_a_failed_turn_raises_and_a_new_question_replaces_the_old() -> None:
    calls = CallTurns()

    async def failing() -> JobEvent:
        raise ProviderUnavailable("down")

    async def forever() -> JobEvent:
        await asyncio.Event().wait()
        raise AssertionError

    calls.start("CA1", forever())
    calls.start("CA1", failing())
    with pytest.raises(ProviderUnavailable):
        await calls.wait("CA1", 1)
    calls.cancel_all()


async def test_a_retried_webhook_waits_for_the_turn_it_started() -> None:
    calls = CallTurns()
    release = asyncio.Event()
    result = JobEvent(job_id="j", seq=2, type="done", content="hi")

    async def turn() -> JobEvent:
        await release.wait()
        return result

    calls.start("CA1", turn(), asked_by="token-1")
    assert calls.asked("CA1", "token-1")
    assert not calls.asked("CA1", "token-2") and not calls.asked("CA1", None)
    waits = [asyncio.create_task(calls.wait("CA1", 5)) for _ in range(2)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waits) == [result, result]
    assert not calls.under_way("CA1")
