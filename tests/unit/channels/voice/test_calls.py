"""Questions under way in a voice process: an answer that outlasts one webhook is picked up by the
next request naming the question."""

from __future__ import annotations

import asyncio

import pytest

from patchbay.channels.voice import calls as calls_module
from patchbay.channels.voice.calls import Asked, CallTurns
from patchbay.errors import ProviderUnavailable
from patchbay.schemas.jobs import JobEvent

RESULT = JobEvent(job_id="j", seq=2, type="done", content="hi")


async def test_a_turn_outlasting_the_webhook_is_picked_up_later() -> None:
    calls = CallTurns()
    release = asyncio.Event()

    async def turn() -> JobEvent:
        await release.wait()
        return RESULT

    calls.start(Asked("CA1 t1", since=100), turn())
    assert await calls.wait("CA1 t1", 0.01) is None
    release.set()
    assert await calls.wait("CA1 t1", 1) == RESULT
    assert not calls.under_way("CA1 t1")


async def test_a_failed_turn_raises() -> None:
    calls = CallTurns()

    async def failing() -> JobEvent:
        raise ProviderUnavailable("down")

    calls.start(Asked("CA1 t1", since=100), failing())
    with pytest.raises(ProviderUnavailable):
        await calls.wait("CA1 t1", 1)


async def test_two_requests_for_one_question_both_get_its_answer() -> None:
    """A webhook Twilio retried while the first request still waits."""
    calls = CallTurns()
    release = asyncio.Event()

    async def turn() -> JobEvent:
        await release.wait()
        return RESULT

    calls.start(Asked("CA1 t1", since=100), turn())
    waits = [asyncio.create_task(calls.wait("CA1 t1", 5)) for _ in range(2)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waits) == [RESULT, RESULT]
    assert not calls.under_way("CA1 t1")


async def test_questions_of_one_call_are_kept_apart() -> None:
    """An answer this process followed but another process spoke is never taken for the
    call's next question's."""
    calls = CallTurns()
    later = JobEvent(job_id="j2", seq=2, type="done", content="the second answer")

    async def answer(event: JobEvent) -> JobEvent:
        return event

    calls.start(Asked("CA1 t1", since=100), answer(RESULT))
    await asyncio.sleep(0)  # the first answer is there, and nobody comes for it here
    calls.start(Asked("CA1 t2", since=110), answer(later))
    assert await calls.wait("CA1 t2", 1) == later
    assert calls.under_way("CA1 t1")


async def test_the_redirect_names_the_job_once_known() -> None:
    calls = CallTurns()

    async def forever() -> JobEvent:
        await asyncio.Event().wait()
        raise AssertionError("not reached")

    calls.start(Asked("CA1 t1", since=100), forever())
    assert calls.asked("CA1 t1").query() == {"delivery": "CA1 t1", "since": "100"}
    calls.note_job("CA1 t1", "job-1")
    assert calls.asked("CA1 t1").query() == {"delivery": "CA1 t1", "since": "100", "job": "job-1"}
    await calls.close(grace_s=0)
    assert await calls.wait("CA1 t1", 1) is None  # stopping: another process takes it up


async def test_stopping_waits_for_turns_the_core_does_not_have_yet() -> None:
    """A question whose recording is still being fetched is lost if the process stops before
    the core has its turn; one the core has is followed by the process the redirect reaches."""
    calls = CallTurns()
    stored = asyncio.Event()

    async def storing() -> JobEvent:
        await asyncio.sleep(0.05)  # the recording comes, the core takes the turn
        calls.note_job("CA1 t1", "job-1")
        stored.set()
        await asyncio.Event().wait()  # the answer takes long
        raise AssertionError("not reached")

    async def answering() -> JobEvent:
        await asyncio.Event().wait()
        raise AssertionError("not reached")

    calls.start(Asked("CA1 t1", since=100), storing(), storing=True)
    calls.start(Asked("CA2 t1", since=100), answering())  # following a turn stored elsewhere
    await asyncio.wait_for(calls.close(grace_s=5), 1)  # not the whole grace: both are stored
    assert stored.is_set()


def test_a_question_is_named_by_its_delivery_or_its_job() -> None:
    assert Asked(None, since=1, job_id="job-1").key == "job:job-1"  # a redirect from before
    assert Asked("CA1 t1", since=1, job_id="job-1").key == "CA1 t1"
    with pytest.raises(ValueError, match="delivery or its job"):
        Asked(None, since=1)


async def test_answers_nobody_came_for_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = CallTurns()

    async def answer() -> JobEvent:
        return RESULT

    async def failing() -> JobEvent:
        raise ProviderUnavailable("down")

    calls.start(Asked("CA1 t1", since=100), answer())
    calls.start(Asked("CA1 t2", since=100), failing())
    await asyncio.sleep(0.01)
    monkeypatch.setattr(calls_module, "FORGET_AFTER_S", 0.0)
    calls.start(Asked("CA2 t1", since=200), answer())
    assert not calls.under_way("CA1 t1") and not calls.under_way("CA1 t2")
    assert await calls.wait("CA2 t1", 1) == RESULT
