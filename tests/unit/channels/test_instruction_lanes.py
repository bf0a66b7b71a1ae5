"""Each sender's share of the instruction consumer's generates (`channels.instructions.lanes`)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from patchbay.channels.instructions.lanes import Lanes, SenderBusy
from patchbay.channels.instructions.later import REGENERATE, generating
from patchbay.schemas.instructions import GENERATE


async def test_a_sender_past_its_share_waits_then_is_refused_while_others_go_on() -> None:
    lanes = Lanes(per_key=1)
    first = await lanes.enter("alice")
    waiting = asyncio.create_task(lanes.enter("alice"))
    await asyncio.sleep(0)
    with pytest.raises(SenderBusy) as refused:
        await lanes.enter("alice")
    assert (refused.value.code, refused.value.retryable) == ("queue_full", True)
    assert "alice" not in refused.value.message  # the key is never told back
    other = await asyncio.wait_for(lanes.enter("bob"), 1)
    assert not waiting.done()
    first.release()
    second = await asyncio.wait_for(waiting, 1)
    second.release()
    second.release()  # once more does nothing
    other.release()
    assert len(lanes) == 0


async def test_a_waiting_instruction_cancelled_leaves_its_place() -> None:
    lanes = Lanes(per_key=1)
    first = await lanes.enter("alice")
    cancelled = asyncio.create_task(lanes.enter("alice"))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    after = asyncio.create_task(lanes.enter("alice"))
    await asyncio.sleep(0)
    assert not after.done()  # waits in the place the cancelled one left, not refused
    first.release()
    (await asyncio.wait_for(after, 1)).release()
    assert len(lanes) == 0


async def test_instructions_without_a_key_are_not_counted() -> None:
    lanes = Lanes(per_key=1)
    for _ in range(3):
        await lanes.enter(None)
    assert len(lanes) == 0


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"type": GENERATE, "data": {"user_input": "hi"}}, GENERATE),
        ({"type": REGENERATE, "data": {"message_id": 1}}, REGENERATE),
        ([{"type": "USER_LIST"}, {"type": GENERATE}], REGENERATE),
        ({"type": "USER_LIST"}, None),
        ([{"type": "USER_LIST"}, "x"], None),
        ("text", None),
    ],
)
def test_generating_instructions_are_told_apart(body: object, kind: str | None) -> None:
    assert generating(orjson.dumps(body)) == kind


def test_a_body_that_is_not_json_is_not_generating() -> None:
    assert generating(b"\xff not json") is None
