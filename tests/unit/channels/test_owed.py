"""Answers owed: each is answered once, whoever asks for it (a sweep, the channel that took it);
one that could not be sent stays owed; one owed too long, or whose reply the channel cannot use,
is given up (and said sent, so it is not asked for again); an answer that comes in time is the
caller's to deliver."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from patchbay.channels.owed import Owed, OwedAnswers
from patchbay.client import CoreClient
from patchbay.errors import DuplicateDelivery
from patchbay.schemas.deliveries import AnswerSent, HoldOwed, OwedAnswer
from patchbay.schemas.jobs import JobEvent
from patchbay.schemas.turns import TurnRead

REPLY: dict[str, object] = {"to": "ann"}


def turn(delivery_id: str) -> TurnRead:
    return TurnRead(
        chat_id="c",
        job_id=f"job-{delivery_id}",
        user_message_id="m",
        assistant_message_id="a",
        model="mock",
    )


def owed_answer(delivery_id: str, *, age: timedelta) -> OwedAnswer:
    return OwedAnswer(
        channel="email",
        delivery_id=delivery_id,
        user_id="u1",
        chat_id="c",
        job_id=f"job-{delivery_id}",
        user_message_id="m",
        assistant_message_id="a",
        model="mock",
        reply=REPLY,
        created_at=datetime.now(UTC) - age,
    )


class FakeCore(CoreClient):
    """Hands out every owed answer to whoever asks (the core's leases are tested on the core)."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9")
        self.owed: list[OwedAnswer] = []
        self.sent: list[str] = []
        self.renewed: list[list[str]] = []

    async def hold_owed(self, hold: HoldOwed) -> list[OwedAnswer]:
        if hold.take:  # a hold on one answer: the core hands it over unless another holds it
            keys = {(key.user_id, key.delivery_id) for key in hold.take}
            return [o for o in self.owed if (o.user_id, o.delivery_id) in keys and not o.held_by]
        self.renewed.append(sorted(key.delivery_id for key in hold.renew))
        return [o for o in self.owed if o.channel == hold.channel][: hold.limit]

    async def answer_sent(self, sent: AnswerSent) -> None:
        self.sent.append(sent.delivery_id)


@dataclass
class Setup:
    answers: OwedAnswers
    core: FakeCore
    followed: list[str] = field(default_factory=list)  # the jobs followed
    delivered: list[str] = field(default_factory=list)  # the texts `send` was given
    done: asyncio.Event = field(default_factory=asyncio.Event)  # set: the jobs end
    send_works: bool = True

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> Setup:
    core = FakeCore()

    async def send(reply: dict[str, object], outcome: JobEvent) -> bool:
        if reply != REPLY:
            raise ValueError("not a reply this channel stored")
        if it.send_works:
            it.delivered.append(outcome.content or "")
        return it.send_works

    it = Setup(OwedAnswers(core, channel="email", send=send, max_age_s=3600), core)

    async def outcome(user_id: str, created: TurnRead) -> JobEvent:
        it.followed.append(created.job_id)
        await it.done.wait()
        return JobEvent(job_id=created.job_id, seq=2, type="done", content="the answer")

    monkeypatch.setattr(it.answers, "_outcome", outcome)
    return it


async def test_each_answer_owed_is_answered_once(setup: Setup) -> None:
    answers, core = setup.answers, setup.core
    core.owed = [owed_answer(d, age=timedelta(minutes=5)) for d in "ab"]
    answers.follow(Owed("u1", "a", turn("a"), REPLY))  # taken by the channel just now
    answers.follow(Owed("u1", "a", turn("a"), REPLY))  # and again: already followed
    await answers.sweep()
    await answers.sweep()  # a second sweep while both are followed adds nothing
    await setup.settle()
    assert sorted(setup.followed) == ["job-a", "job-b"]
    assert answers.following("u1", "a") and answers.following("u1", "b")
    assert core.renewed == [["a"], ["a", "b"]]  # each sweep renews the hold on those it sends
    setup.done.set()
    await setup.settle()
    assert sorted(core.sent) == ["a", "b"] and setup.delivered == ["the answer"] * 2
    assert not answers.following("u1", "a")


async def test_an_answer_that_could_not_go_stays_owed(setup: Setup) -> None:
    setup.done.set()
    setup.send_works = False
    setup.answers.follow(Owed("u1", "a", turn("a"), REPLY))
    await setup.settle()
    assert setup.followed == ["job-a"] and setup.core.sent == []
    assert not setup.answers.following("u1", "a")  # for the next sweep to find


async def test_answers_owed_too_long_or_unusable_are_given_up(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    setup.done.set()
    setup.core.owed = [owed_answer("old", age=timedelta(hours=2))]
    await setup.answers.sweep()
    setup.answers.follow(Owed("u1", "odd", turn("odd"), {"to": 1}))
    await setup.settle()
    assert setup.core.sent == ["old", "odd"] and setup.delivered == []
    assert setup.followed == ["job-odd"]
    assert "owed for 2 h" in caplog.text and "not a reply this channel stored" in caplog.text


async def test_an_answer_in_time_is_the_callers_and_a_late_one_is_sent(setup: Setup) -> None:
    answers = setup.answers
    late = asyncio.create_task(answers.answer_within(Owed("u1", "b", turn("b"), REPLY), 0.05))
    assert await late is None  # too slow: followed instead
    assert answers.following("u1", "b")
    await answers.sweep()  # a sweep meanwhile leaves it alone
    setup.done.set()
    in_time = await answers.answer_within(Owed("u1", "a", turn("a"), REPLY), 5)
    assert in_time is not None and in_time.content == "the answer"
    await setup.settle()
    assert setup.delivered == ["the answer"]  # only the late one went through `send`
    assert sorted(setup.core.sent) == ["a", "b"]
    assert setup.followed == ["job-b", "job-a"]


async def test_an_answer_a_sweep_follows_already_is_not_the_callers(setup: Setup) -> None:
    setup.core.owed = [owed_answer("a", age=timedelta(seconds=1))]
    await setup.answers.sweep()  # found it between the turn being stored and the caller asking
    setup.done.set()
    assert await setup.answers.answer_within(Owed("u1", "a", turn("a"), REPLY), 5) is None
    await setup.settle()
    assert setup.delivered == ["the answer"] and setup.core.sent == ["a"]  # sent once, by `send`


async def test_a_delivery_taken_before_is_answered_here_only_if_no_other_process_holds_it(
    setup: Setup,
) -> None:
    """A deferred mail retried to a second channel process: the one holding its answer sends it,
    the other only says the answer is coming."""
    held_elsewhere = owed_answer("a", age=timedelta(seconds=1)).model_copy(
        update={"held_by": "host-a/email:2525"}
    )
    setup.core.owed = [held_elsewhere, owed_answer("b", age=timedelta(seconds=1))]
    setup.done.set()
    for delivery in "abc":
        taken = DuplicateDelivery(
            "delivered before", chat_id="c", message_id="m", job_id=f"job-{delivery}", owed=True
        )
        assert await setup.answers.follow_taken(taken, "u1", delivery, REPLY)
    answered = DuplicateDelivery("delivered before", chat_id="c", message_id="m", job_id="j")
    assert not await setup.answers.follow_taken(answered, "u1", "d", REPLY)
    await setup.settle()
    assert setup.followed == ["job-b"] and setup.core.sent == ["b"]
    assert setup.delivered == ["the answer"]
