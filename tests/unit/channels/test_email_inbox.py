"""The inbox's verdicts: a mail is taken (250) only once its turn is stored; what cannot be
handled now is a 451; what will never do is a 5xx; nothing is answered twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest

from patchbay.channels import email as email_plugin
from patchbay.channels.email import EmailChannel
from patchbay.channels.email.inbox import Inbox, Verdict
from patchbay.channels.email.relay import Relay, RelayUnavailable
from patchbay.channels.email.settings import EmailSettings, RelaySettings
from patchbay.channels.owed import Owed
from patchbay.client import CoreClient
from patchbay.errors import (
    CoreUnavailable,
    DuplicateDelivery,
    InvalidRequest,
    ModelNotFound,
    PatchbayError,
    QueueFull,
    error_from_dict,
)
from patchbay.plugins.manager import build_plugin_manager, channel_classes
from patchbay.schemas.deliveries import HoldOwed, OwedAnswer
from patchbay.schemas.senders import SenderPolicy, SenderResolved
from patchbay.schemas.turns import TurnRead
from tests.support.users import a_user

ANN = "ann@example.org"
CREATED = TurnRead(
    chat_id="c", job_id="j", user_message_id="u", assistant_message_id="a", model="m"
)


class FakeRelay(Relay):
    def __init__(self) -> None:
        super().__init__(RelaySettings())
        self.sent: list[EmailMessage] = []
        self.down = False

    async def send(self, message: EmailMessage) -> None:
        if self.down:
            raise RelayUnavailable("the relay is down")
        self.sent.append(message)


class Fakes:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, policy: SenderPolicy = "open") -> None:
        settings = EmailSettings(address="ai@patchbay.test", policy=policy, max_mails_per_minute=3)
        self.channel = EmailChannel(settings, CoreClient("http://127.0.0.1:9"))
        self.relay = FakeRelay()
        self.inbox = Inbox(self.channel, self.relay)
        self.who: SenderResolved | PatchbayError = SenderResolved(status="known", user=a_user())
        self.resolved: list[str] = []
        self.turns: list[Any] = []
        self.followed: list[TurnRead] = []
        self.owed: list[Owed] = []
        self.start_error: PatchbayError | None = None
        self.gate: asyncio.Event | None = None
        monkeypatch.setattr(self.channel, "sender", self.sender)
        monkeypatch.setattr(self.channel.core, "call_as", self.call_as)
        monkeypatch.setattr(self.channel.core, "hold_owed", self.hold_owed)
        monkeypatch.setattr(self.inbox.answers, "follow", self.follow)

    async def hold_owed(self, hold: HoldOwed) -> list[OwedAnswer]:
        """A delivery taken before: the core hands its owed answer to this process."""
        (key,) = hold.take
        owed = OwedAnswer(
            channel="email",
            delivery_id=key.delivery_id,
            user_id=key.user_id,
            chat_id=CREATED.chat_id,
            job_id=CREATED.job_id,
            user_message_id=CREATED.user_message_id,
            assistant_message_id=CREATED.assistant_message_id,
            model=CREATED.model,
            reply={},
            created_at=datetime.now(UTC),
        )
        return [owed]

    def follow(self, owed: Owed) -> None:
        self.owed.append(owed)
        self.followed.append(owed.turn)

    async def sender(self, address: str, display_name: str | None = None) -> SenderResolved:
        self.resolved.append(address)
        if isinstance(self.who, PatchbayError):
            raise self.who
        return self.who

    async def call_as(self, kind: type, method: str, path: str, **kw: Any) -> object:
        if self.gate is not None:
            await self.gate.wait()
        if self.start_error is not None:
            raise self.start_error
        self.turns.append(kw["body"])
        return CREATED


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    return Fakes(monkeypatch)


def mail(text: str = "Hello", sender: str = ANN, message_id: str = "<m1@x>") -> bytes:
    message = EmailMessage()
    message["From"], message["Subject"], message["Message-ID"] = sender, "Hi", message_id
    message.set_content(text)
    return message.as_bytes()


async def test_a_stored_turn_is_taken_and_followed_once(fakes: Fakes) -> None:
    verdict = await fakes.inbox.receive(mail(), mail_from=ANN)
    assert verdict.code == 250 and "job j" in verdict.text
    (turn,) = fakes.turns
    assert (turn.channel, turn.thread, turn.text) == ("email", "<m1@x>", "Hi\n\nHello")
    assert turn.metadata["message_id"] == "<m1@x>" and fakes.followed == [CREATED]
    assert turn.delivery_id == f"{ANN} <m1@x>"
    assert turn.reply == {  # kept by the core while the answer is owed
        "sender": ANN,
        "display_name": None,
        "subject": "Hi",
        "message_id": "<m1@x>",
        "references": [],
    }
    (owed,) = fakes.owed
    assert (owed.user_id, owed.delivery_id) == (a_user().id, turn.delivery_id)
    again = await fakes.inbox.receive(mail(), mail_from=ANN)
    assert again.code == 250 and len(fakes.turns) == 1 and len(fakes.followed) == 1


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidRequest("no helper that is up turns 'image/png' into text"), 554),
        (error_from_dict({"code": "unreadable_input", "message": "not a PDF"}, 422), 554),
        (error_from_dict({"code": "unsupported_media_type", "message": "no"}, 415), 554),
        (QueueFull("the queue is full"), 451),
        (CoreUnavailable("the core is not answering"), 451),
        (ModelNotFound("no model 'x'"), 451),  # the admin's to fix: the sender retries meanwhile
    ],
)
async def test_a_turn_the_core_refuses(fakes: Fakes, error: PatchbayError, code: int) -> None:
    fakes.start_error = error
    assert (await fakes.inbox.receive(mail(), mail_from=ANN)).code == code
    fakes.start_error = None  # refused mail is not remembered: the retry is taken
    assert (await fakes.inbox.receive(mail(), mail_from=ANN)).code == 250


async def test_a_mail_the_core_took_and_answered_before_is_taken_and_not_followed(
    fakes: Fakes,
) -> None:
    fakes.start_error = DuplicateDelivery(
        "delivered before", chat_id="c", message_id="m", job_id="j"
    )
    verdict = await fakes.inbox.receive(mail(), mail_from=ANN)
    assert verdict.code == 250 and "answered once" in verdict.text
    assert fakes.followed == []


async def test_a_mail_whose_answer_is_still_owed_is_taken_and_followed(fakes: Fakes) -> None:
    fakes.start_error = DuplicateDelivery(
        "delivered before", chat_id="c", message_id="u", job_id="j", owed=True
    )
    verdict = await fakes.inbox.receive(mail(), mail_from=ANN)
    assert verdict.code == 250 and "the answer comes by mail" in verdict.text
    assert fakes.followed == [CREATED]
    assert fakes.owed[0].reply["message_id"] == "<m1@x>"


async def test_an_unreachable_core_defers_the_mail(fakes: Fakes) -> None:
    fakes.who = CoreUnavailable("down")
    verdict = await fakes.inbox.receive(mail(), mail_from=ANN)
    assert verdict.code == 451 and "try again later" in verdict.text


async def test_the_same_mail_twice_at_once_is_deferred(fakes: Fakes) -> None:
    fakes.gate = asyncio.Event()
    first = asyncio.create_task(fakes.inbox.receive(mail(), mail_from=ANN))
    await asyncio.sleep(0.01)
    assert (await fakes.inbox.receive(mail(), mail_from=ANN)).code == 451
    fakes.gate.set()
    assert (await first).code == 250


@pytest.mark.parametrize(
    ("raw", "mail_from", "code", "says"),
    [
        (mail(), "", 250, "bounces"),
        (mail(sender="bob@example.org"), ANN, 550, "is not the sender"),
        (b"Subject: no sender\r\n\r\nhi", ANN, 550, "From header"),
    ],
)
async def test_mail_that_is_not_a_turn(
    fakes: Fakes, raw: bytes, mail_from: str, code: int, says: str
) -> None:
    verdict = await fakes.inbox.receive(raw, mail_from=mail_from)
    assert verdict.code == code and says in verdict.text
    assert fakes.resolved == [] and fakes.turns == []


async def test_pairing_mails_the_code_once(fakes: Fakes) -> None:
    fakes.who = SenderResolved(status="pairing", code="ABCD2345", new_code=True)
    fakes.relay.down = True
    assert (await fakes.inbox.receive(mail(), mail_from=ANN)).code == 451  # it will come again
    fakes.relay.down = False
    fakes.who = SenderResolved(status="pairing", code="ABCD2345")
    assert (await fakes.inbox.receive(mail(), mail_from=ANN)).code == 250
    (note,) = fakes.relay.sent
    assert "ABCD2345" in note.get_content() and note["In-Reply-To"] == "<m1@x>"
    later = await fakes.inbox.receive(mail(message_id="<m2@x>"), mail_from=ANN)
    assert later.code == 550 and "ABCD2345" in later.text and len(fakes.relay.sent) == 1
    assert fakes.turns == []


async def test_senders_checked_before_data(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = Fakes(monkeypatch, policy="allowlist")
    fakes.who = SenderResolved(status="refused", reason="this sender is not on the list")
    refused = await fakes.inbox.check_sender("Eve@Evil.test")
    assert refused is not None and refused.code == 550 and "<eve@evil.test>" in refused.text
    assert await fakes.inbox.check_sender("") is None  # a bounce is let through to DATA
    fakes.who = SenderResolved(status="known", user=a_user())
    assert await fakes.inbox.check_sender(ANN) is None


async def test_pairing_and_open_policies_resolve_nobody_before_data(fakes: Fakes) -> None:
    assert await fakes.inbox.check_sender(ANN) is None and fakes.resolved == []


async def test_a_flooding_sender_is_deferred(fakes: Fakes) -> None:
    for n in range(3):
        assert (await fakes.inbox.receive(mail(message_id=f"<{n}@x>"), mail_from=ANN)).code == 250
    verdict = await fakes.inbox.receive(mail(message_id="<3@x>"), mail_from=ANN)
    assert verdict.code == 451 and verdict.text.startswith("4.7.1")
    limited = await fakes.inbox.check_sender(ANN)
    assert limited is not None and limited.code == 451


def test_the_channel_is_built_in_through_the_plugin_hook() -> None:
    manager = build_plugin_manager(entry_points=False)
    assert manager.is_registered(email_plugin)
    assert channel_classes(manager)["email"] is EmailChannel


async def test_another_sender_cannot_silence_a_mail_by_its_message_id(fakes: Fakes) -> None:
    assert (
        await fakes.inbox.receive(mail(sender="bob@example.org"), mail_from="bob@example.org")
    ).code == 250
    assert (await fakes.inbox.receive(mail(), mail_from=ANN)).code == 250
    assert len(fakes.turns) == 2


def test_a_verdict_is_one_smtp_line() -> None:
    line = Verdict(554, "5.6.0 bad\r\n250 injected" + "x" * 600).line
    assert line.startswith("554 5.6.0 bad 250 injected") and len(line) == 500 and "\n" not in line
