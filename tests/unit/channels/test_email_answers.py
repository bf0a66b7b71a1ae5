"""The sweep for answers owed: each is followed once, whoever asks; one owed too long, or whose
reply the channel cannot read, is given up (and said sent, so it is not asked for again)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest

from patchbay.channels.email.answers import Answers, Owed
from patchbay.channels.email.compose import ReplyTo
from patchbay.channels.email.relay import Relay
from patchbay.channels.email.settings import RelaySettings
from patchbay.client import CoreClient
from patchbay.schemas.deliveries import AnswerSent, OwedAnswer
from patchbay.schemas.turns import TurnRead

REPLY = ReplyTo("ann@example.org", "Ann", "Hi", "<m1@x>", ())


def owed_answer(delivery_id: str, *, age: timedelta, reply: dict[str, object]) -> OwedAnswer:
    return OwedAnswer(
        channel="email",
        delivery_id=delivery_id,
        user_id="u1",
        chat_id="c",
        job_id=f"job-{delivery_id}",
        user_message_id="m",
        assistant_message_id="a",
        model="mock",
        reply=reply,
        created_at=datetime.now(UTC) - age,
    )


class FakeCore(CoreClient):
    def __init__(self, owed: list[OwedAnswer]) -> None:
        super().__init__("http://127.0.0.1:9")
        self.owed = owed
        self.sent: list[AnswerSent] = []

    async def owed_answers(self, channel: str, *, limit: int = 100) -> list[OwedAnswer]:
        return [o for o in self.owed if o.channel == channel][:limit]

    async def answer_sent(self, sent: AnswerSent) -> None:
        self.sent.append(sent)


class FakeRelay(Relay):
    def __init__(self) -> None:
        super().__init__(RelaySettings())
        self.mails: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> None:
        self.mails.append(message)


@dataclass
class Setup:
    answers: Answers
    core: FakeCore
    relay: FakeRelay
    jobs: list[str]  # the jobs followed
    done: asyncio.Event  # set: the jobs followed end


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> Setup:
    core, relay = FakeCore([]), FakeRelay()
    answers = Answers(core, relay, channel="email", address="ai@x", max_age_s=3600)
    it = Setup(answers, core, relay, [], asyncio.Event())

    async def text(user_id: str, created: TurnRead) -> str:
        it.jobs.append(created.job_id)
        await it.done.wait()
        return "the answer"

    monkeypatch.setattr(answers, "_text", text)
    return it


async def test_each_answer_owed_is_followed_once(setup: Setup) -> None:
    channel, core, jobs = setup.answers, setup.core, setup.jobs
    core.owed = [owed_answer(d, age=timedelta(minutes=5), reply=REPLY.to_json()) for d in "ab"]
    turn = TurnRead(chat_id="c", job_id="job-a", user_message_id="m", assistant_message_id="a",
                    model="mock")  # fmt: skip
    channel.follow(Owed("u1", "a", turn, REPLY))  # taken by SMTP just now
    await channel.sweep()
    await channel.sweep()  # a second sweep while both are followed adds nothing
    await asyncio.sleep(0)
    assert sorted(jobs) == ["job-a", "job-b"]
    assert channel.following("u1", "a") and channel.following("u1", "b")
    setup.done.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert sorted(s.delivery_id for s in core.sent) == ["a", "b"]
    assert len(setup.relay.mails) == 2
    assert not channel.following("u1", "a")


async def test_answers_owed_too_long_or_unreadable_are_given_up(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    channel, core = setup.answers, setup.core
    core.owed = [
        owed_answer("old", age=timedelta(hours=2), reply=REPLY.to_json()),
        owed_answer("odd", age=timedelta(minutes=1), reply={"sender": 1}),
    ]
    await channel.sweep()
    assert [s.delivery_id for s in core.sent] == ["old", "odd"]
    assert setup.jobs == [] and setup.relay.mails == []
    assert "owed for 2 h" in caplog.text and "not an email reply" in caplog.text
