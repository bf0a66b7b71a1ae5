"""What a chat channel answers, with the core replaced by a channel that records its calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from patchbay.channels.base import Channel, ChannelSettings
from patchbay.channels.owed import OwedAnswers
from patchbay.channels.telegram.conversations import (
    FLOOD_NOTICE,
    NOTHING_TO_READ,
    TOO_LONG,
    Conversations,
    Inbound,
    outcome_text,
)
from patchbay.client import CoreClient
from patchbay.errors import CoreUnavailable, DuplicateDelivery, PayloadTooLarge
from patchbay.schemas.deliveries import AnswerSent
from patchbay.schemas.jobs import ErrorInfo, JobEvent
from patchbay.schemas.senders import SenderResolved
from patchbay.schemas.turns import AttachmentIn, TurnRead, TurnResult
from tests.support.users import a_user

ANN = a_user()


def result(type_: str = "done", content: str | None = "The answer.", **extra: Any) -> TurnResult:
    turn = TurnRead(
        chat_id="c", job_id="j", user_message_id="m1", assistant_message_id="m2", model="x"
    )
    event = JobEvent(job_id="j", seq=1, type=type_, content=content, **extra)
    return TurnResult(turn=turn, outcome=event)


class FakeChannel(Channel[ChannelSettings]):
    name = "fake"

    def __init__(self, resolved: SenderResolved | Exception) -> None:
        super().__init__(ChannelSettings(), CoreClient("http://127.0.0.1:9"))
        self.resolved = resolved
        self.turns: list[dict[str, Any]] = []
        self.outcome: TurnResult | Exception = result()
        self.marked_sent: list[str] = []

    async def sender(self, address: str, display_name: str | None = None) -> SenderResolved:
        if isinstance(self.resolved, Exception):
            raise self.resolved
        return self.resolved

    async def start_turn(
        self,
        user_id: str,
        text: str,
        *,
        delivery_id: str,
        reply: dict[str, object],
        holder: str,
        thread: str | None = None,
        attachments: Sequence[AttachmentIn] = (),
        metadata: dict[str, object] | None = None,
        behind: bool = False,
    ) -> TurnRead:
        self.turns.append(
            {
                "behind": behind,
                "user": user_id,
                "text": text,
                "thread": thread,
                "files": attachments,
                "delivery": delivery_id,
                "reply": reply,
            }
        )
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome.turn


async def converse(channel: FakeChannel, *messages: Inbound, per_minute: int = 20) -> list[str]:
    """What the channel said: notes through `reply`, answers through its `send`."""
    said: list[str] = []

    async def reply(text: str) -> None:
        said.append(text)

    async def send(to: dict[str, object], outcome: JobEvent) -> bool:
        assert to == REPLY_TO
        said.append(outcome_text(outcome))
        return True

    async def outcome(user_id: str, created: TurnRead) -> JobEvent:
        assert isinstance(channel.outcome, TurnResult)
        return channel.outcome.outcome

    async def answer_sent(sent: AnswerSent) -> None:
        channel.marked_sent.append(sent.delivery_id)

    answers = OwedAnswers(channel.core, channel="fake", send=send, max_age_s=60)
    answers._outcome = outcome  # type: ignore[method-assign]
    channel.core.answer_sent = answer_sent  # type: ignore[method-assign]
    conversations = Conversations(channel, answers, per_minute=per_minute)
    for message in messages:
        await conversations.handle(message, reply)
    return said


REPLY_TO: dict[str, object] = {"chat_id": 42}


def hello(text: str = "hello", **extra: Any) -> Inbound:
    return Inbound(address="42", thread="42", text=text, reply_to=REPLY_TO, **extra)


KNOWN = SenderResolved(status="known", user=ANN)


async def test_a_known_sender_gets_the_answer_of_a_turn_in_their_thread() -> None:
    channel = FakeChannel(KNOWN)
    assert await converse(channel, hello(delivery_id="bot/42/7")) == ["The answer."]
    assert channel.turns == [
        {
            "behind": True,  # stored at once, answered after the chat's answer before it
            "user": "u1",
            "text": "hello",
            "thread": "42",
            "files": [],
            "delivery": "bot/42/7",
            "reply": REPLY_TO,  # kept with the turn while its answer is owed
        }
    ]
    assert channel.marked_sent == ["bot/42/7"]


async def test_a_message_without_an_id_of_its_own_is_a_delivery_too() -> None:
    channel = FakeChannel(KNOWN)
    await converse(channel, hello(), hello())
    first, second = (turn["delivery"] for turn in channel.turns)
    assert first.startswith("patchbay-") and second.startswith("patchbay-") and first != second


@pytest.mark.parametrize(
    ("resolved", "says"),
    [
        (SenderResolved(status="pairing", code="ABCD1234"), "code is ABCD1234"),
        (SenderResolved(status="refused", reason="not listed"), "may not use"),
    ],
)
async def test_a_sender_not_let_in_gets_no_turn(resolved: SenderResolved, says: str) -> None:
    channel = FakeChannel(resolved)
    (said,) = await converse(channel, hello())
    assert says in said
    assert channel.turns == []


async def test_files_are_fetched_only_for_senders_let_in() -> None:
    fetched: list[str] = []

    async def files() -> list[AttachmentIn]:
        fetched.append("yes")
        return [AttachmentIn(media_type="text/plain", data="aGk=")]

    await converse(FakeChannel(SenderResolved(status="refused")), hello(files=files))
    assert fetched == []
    channel = FakeChannel(KNOWN)
    await converse(channel, hello("", files=files))
    assert fetched == ["yes"] and len(channel.turns[0]["files"]) == 1


@pytest.mark.parametrize(("text", "says"), [("  ", NOTHING_TO_READ), ("x" * 1_000_001, TOO_LONG)])
async def test_a_message_with_nothing_to_read_or_too_long_is_not_a_turn(
    text: str, says: str
) -> None:
    channel = FakeChannel(KNOWN)
    assert await converse(channel, hello(text)) == [says]
    assert channel.turns == []


async def test_a_flood_gets_one_notice_and_no_turns() -> None:
    channel = FakeChannel(KNOWN)
    said = await converse(channel, *[hello(f"n{n}") for n in range(5)], per_minute=2)
    assert said == ["The answer.", "The answer.", FLOOD_NOTICE]
    assert len(channel.turns) == 2


@pytest.mark.parametrize(
    "error", [CoreUnavailable("the core is restarting"), PayloadTooLarge("that file is too large")]
)
async def test_errors_become_a_clear_sorry(error: Exception) -> None:
    channel = FakeChannel(KNOWN)
    channel.outcome = error
    (said,) = await converse(channel, hello())
    assert said.startswith("Sorry, I could not answer that: ") and str(error) in said


async def test_a_message_the_core_took_before_is_not_answered_again() -> None:
    channel = FakeChannel(KNOWN)
    channel.outcome = DuplicateDelivery("delivered before", chat_id="c", message_id="m", job_id="j")
    assert await converse(channel, hello(delivery_id="bot/42/7")) == []
    assert channel.turns[0]["delivery"] == "bot/42/7"
    assert channel.marked_sent == []


async def test_the_core_being_down_is_a_sorry_too() -> None:
    (said,) = await converse(FakeChannel(CoreUnavailable("down")), hello())
    assert said == "Sorry, I could not answer that: down"


@pytest.mark.parametrize(
    ("outcome", "text"),
    [
        (result(), "The answer."),
        (result(content="  "), "(the model gave an empty answer)"),
        (result("cancelled", "Half"), "Half\n\n(stopped)"),
        (result("cancelled", None), "(stopped before an answer)"),
        (
            result("failed", None, error=ErrorInfo(code="x", message="upstream down")),
            "Sorry, I could not answer that: upstream down",
        ),
        (result("failed", None), "Sorry, I could not answer that: the model failed"),
    ],
)
def test_outcome_text(outcome: TurnResult, text: str) -> None:
    assert outcome_text(outcome.outcome) == text
