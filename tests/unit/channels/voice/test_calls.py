"""Turns under way per call: an answer that outlasts one webhook is picked up by the next."""

from __future__ import annotations

import asyncio

import pytest

from patchbay.channels.voice.calls import CallTurns
from patchbay.errors import ProviderUnavailable
from patchbay.schemas.turns import TurnResult


async def test_a_turn_outlasting_the_webhook_is_picked_up_later() -> None:
    calls = CallTurns()
    release = asyncio.Event()
    result = TurnResult.model_validate(
        {
            "turn": {
                "chat_id": "c",
                "job_id": "j",
                "user_message_id": "u",
                "assistant_message_id": "a",
                "model": "m",
            },
            "outcome": {"job_id": "j", "seq": 2, "type": "done", "content": "hi"},
        }
    )

    async def turn() -> TurnResult:
        await release.wait()
        return result

    calls.start("CA1", turn())
    assert await calls.wait("CA1", 0.01) is None
    release.set()
    assert await calls.wait("CA1", 1) == result
    assert not calls.under_way("CA1")


async def test_a_failed_turn_raises_and_a_new_question_replaces_the_old() -> None:
    calls = CallTurns()

    async def failing() -> TurnResult:
        raise ProviderUnavailable("down")

    async def forever() -> TurnResult:
        await asyncio.Event().wait()
        raise AssertionError

    calls.start("CA1", forever())
    calls.start("CA1", failing())
    with pytest.raises(ProviderUnavailable):
        await calls.wait("CA1", 1)
    calls.cancel_all()
