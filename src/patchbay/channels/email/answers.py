"""Mailing answers back: each accepted mail's answer is owed in the core until the relay took it
(see `channels.owed`), so a restart or a relay that stays away loses none."""

from __future__ import annotations

from patchbay.channels.email import compose
from patchbay.channels.email.compose import ReplyTo
from patchbay.channels.email.relay import Relay
from patchbay.channels.email.settings import EmailSettings
from patchbay.channels.owed import OwedAnswers
from patchbay.client import CoreClient
from patchbay.schemas.jobs import JobEvent


def answer_text(outcome: JobEvent) -> str:
    """What the reply says for a job's terminal event."""
    if outcome.type == "done":
        return outcome.content or "(The model gave no answer.)"
    if outcome.type == "cancelled":
        return (outcome.content or "") + "\n\n(The answer was stopped before its end.)"
    reason = outcome.error.message if outcome.error else "the model failed"
    return f"Sorry, there is no answer this time: {reason}. Write again to try once more."


def mail_answers(
    core: CoreClient, relay: Relay, *, channel: str, settings: EmailSettings
) -> OwedAnswers:
    """The answers owed to the email channel, replied from its address through `relay`."""

    async def send(reply: dict[str, object], outcome: JobEvent) -> bool:
        to = ReplyTo.from_json(reply)
        text = answer_text(outcome)
        return await relay.deliver(compose.reply(to, sender=settings.address, text=text))

    return OwedAnswers.of(core, channel, settings, send, port=settings.port)
