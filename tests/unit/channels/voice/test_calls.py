"""Questions under way in a voice process: an answer that outlasts one webhook is picked up by the
next request naming the question."""

from __future__ import annotations

import asyncio

import pytest

from patchbay.channels.voice import calls as calls_module
from patchbay.channels.voice.calls import Asked, Caller, CallTurns
from patchbay.errors import ProviderUnavailable
from patchbay.schemas.jobs import JobEvent

RESULT = JobEvent(job_id="j", seq=2, type="done", content="hi")
ON_CA1 = Caller("CA1", "user-1")
ON_CA2 = Caller("CA2", "user-2")


async def forever() -> JobEvent:
    """A turn whose answer takes long."""
    await asyncio.Event().wait()
    raise AssertionError("not reached")


async def test_a_turn_outlasting_the_webhook_is_picked_up_later() -> None:
    calls = CallTurns()
    release = asyncio.Event()

    async def turn() -> JobEvent:
        await release.wait()
        return RESULT

    calls.start(Asked("CA1 t1", since=100), turn(), caller=ON_CA1)
    assert await calls.wait("CA1 t1", 0.01) is None
    release.set()
    assert await calls.wait("CA1 t1", 1) == RESULT
    assert not calls.under_way("CA1 t1")


async def test_a_failed_turn_raises() -> None:
    calls = CallTurns()

    async def failing() -> JobEvent:
        raise ProviderUnavailable("down")

    calls.start(Asked("CA1 t1", since=100), failing(), caller=ON_CA1)
    with pytest.raises(ProviderUnavailable):
        await calls.wait("CA1 t1", 1)


async def test_two_requests_for_one_question_both_get_its_answer() -> None:
    """A webhook Twilio retried while the first request still waits."""
    calls = CallTurns()
    release = asyncio.Event()

    async def turn() -> JobEvent:
        await release.wait()
        return RESULT

    calls.start(Asked("CA1 t1", since=100), turn(), caller=ON_CA1)
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

    calls.start(Asked("CA1 t1", since=100), answer(RESULT), caller=ON_CA1)
    await asyncio.sleep(0)  # the first answer is there, and nobody comes for it here
    calls.start(Asked("CA1 t2", since=110), answer(later), caller=ON_CA1)
    assert await calls.wait("CA1 t2", 1) == later
    assert calls.under_way("CA1 t1")


async def test_the_redirect_names_the_job_once_known() -> None:
    calls = CallTurns()

    calls.start(Asked("CA1 t1", since=100), forever(), caller=ON_CA1)
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

    calls.start(Asked("CA1 t1", since=100), storing(), caller=ON_CA1, storing=True)
    calls.start(
        Asked("CA2 t1", since=100), forever(), caller=ON_CA2
    )  # following a turn stored elsewhere
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

    calls.start(Asked("CA1 t1", since=100), answer(), caller=ON_CA1)
    calls.start(Asked("CA1 t2", since=100), failing(), caller=ON_CA1)
    await asyncio.sleep(0.01)
    monkeypatch.setattr(calls_module, "FORGET_AFTER_S", 0.0)
    calls.start(Asked("CA2 t1", since=200), answer(), caller=ON_CA2)
    assert not calls.under_way("CA1 t1") and not calls.under_way("CA1 t2")
    assert await calls.wait("CA2 t1", 1) == RESULT


async def test_an_ended_call_stops_and_forgets_its_questions() -> None:
    """The caller hung up: the turns still under way are stopped, and their jobs named for the
    core to cancel; the call's answered questions are forgotten, and other calls go on."""
    calls = CallTurns()

    async def answer() -> JobEvent:
        return RESULT

    calls.start(Asked("CA1 t1", since=100), answer(), caller=ON_CA1)
    calls.start(Asked("CA1 t2", since=110), forever(), caller=ON_CA1)
    calls.note_job("CA1 t2", "job-2")
    calls.start(Asked("CA2 t1", since=100), forever(), caller=ON_CA2)
    calls.note_job("CA2 t1", "job-3")
    await asyncio.sleep(0)  # the first answer is there
    waiting = asyncio.create_task(calls.wait("CA1 t2", 5))  # the webhook's request, waiting
    await asyncio.sleep(0)
    assert await asyncio.wait_for(calls.end("CA1", grace_s=5), 1) == [(ON_CA1, "job-2")]
    assert await asyncio.wait_for(waiting, 1) is None
    assert not calls.under_way("CA1 t1") and not calls.under_way("CA1 t2")
    assert calls.under_way("CA2 t1")
    assert await calls.end("CA9", grace_s=5) == []  # a call with nothing under way
    await calls.close(grace_s=0)


async def test_an_ended_call_waits_for_the_core_to_have_its_question() -> None:
    """The caller hung up while their question was being handed to the core (a recording being
    fetched): stopping it then could leave its job running unknown, so its job is waited for."""
    calls = CallTurns()

    async def storing() -> JobEvent:
        await asyncio.sleep(0.05)  # the recording comes, the core takes the turn
        calls.note_job("CA1 t1", "job-1")
        return await forever()

    calls.start(Asked("CA1 t1", since=100), storing(), caller=ON_CA1, storing=True)
    assert await asyncio.wait_for(calls.end("CA1", grace_s=5), 1) == [(ON_CA1, "job-1")]
    assert not calls.under_way("CA1 t1")
