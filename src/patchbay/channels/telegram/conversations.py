"""What a chat channel does with each message: turn floods away, resolve the sender under the
channel's policy, run a turn (one at a time per thread, so answers come in order) and reply.

A channel hands over an `Inbound` and a `reply` callable that delivers (and chunks) text; this
module never speaks a protocol. Nothing here is Telegram-specific; the XMPP channel uses it too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from patchbay.channels.base import Channel, pairing_message
from patchbay.channels.limits import FloodGate, KeyedLock
from patchbay.errors import DuplicateDelivery, PatchbayError
from patchbay.schemas.options import MAX_TEXT
from patchbay.schemas.turns import AttachmentIn, TurnResult

logger = logging.getLogger(__name__)

Reply = Callable[[str], Awaitable[None]]
FetchFiles = Callable[[], Awaitable[Sequence[AttachmentIn]]]

FLOOD_NOTICE = (
    "You are sending messages faster than I can answer, so I am skipping some. "
    "Wait a minute, then write again."
)
NOTHING_TO_READ = "Send me a message and I will answer."
TOO_LONG = f"That message is too long for me: keep it under {MAX_TEXT:,} characters."
MAX_NAME = 200  # what the core keeps of a display name


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message a sender wrote, as a chat channel hands it over."""

    address: str  # who wrote, in the channel's terms (a Telegram user id, a bare JID)
    thread: str  # which conversation: one chat in patchbay per thread
    text: str
    display_name: str | None = None
    metadata: dict[str, object] = field(default_factory=dict)
    files: FetchFiles | None = None  # fetched only once the sender is let in
    delivery_id: str | None = None  # the channel's id for the message: answered once, ever


class Conversations:
    """Runs what senders write as turns in `channel`, at most `per_minute` messages per sender."""

    def __init__(self, channel: Channel[Any], *, per_minute: int) -> None:
        self.channel = channel
        self.gate = FloodGate(per_minute)
        self.threads = KeyedLock()

    async def handle(self, inbound: Inbound, reply: Reply) -> None:
        """Answer `inbound` through `reply`; a flooding sender's excess is dropped unanswered
        (one notice first) and never reaches the core, and a message the core took before (its
        `delivery_id`) is not answered again."""
        verdict = self.gate.check(inbound.address)
        if verdict != "pass":
            logger.info("%s: a sender floods; message dropped", self.channel.name)
            if verdict == "warn":
                await reply(FLOOD_NOTICE)
            return
        async with self.threads.hold(inbound.thread):
            answer = await self._answer(inbound)
            if answer is not None:
                await reply(answer)

    async def _answer(self, inbound: Inbound) -> str | None:
        started = time.monotonic()
        try:
            name = inbound.display_name[:MAX_NAME] if inbound.display_name else None
            who = await self.channel.sender(inbound.address, name)
            if who.user is None:
                return pairing_message(who)
            attachments = list(await inbound.files()) if inbound.files else []
            if not inbound.text.strip() and not attachments:
                return NOTHING_TO_READ
            if len(inbound.text) > MAX_TEXT:
                return TOO_LONG
            result = await self.channel.turn(
                who.user.id,
                inbound.text,
                thread=inbound.thread,
                attachments=attachments,
                metadata=inbound.metadata,
                delivery_id=inbound.delivery_id,
            )
        except DuplicateDelivery:
            logger.info("%s: a message answered before came again", self.channel.name)
            return None
        except PatchbayError as exc:
            logger.warning("%s: no answer (%s: %s)", self.channel.name, exc.code, exc.message)
            return f"Sorry, I could not answer that: {exc.message}"
        logger.info(
            "%s: turn %s %s in %.2fs",
            self.channel.name,
            result.turn.job_id,
            result.outcome.type,
            time.monotonic() - started,
        )
        return answer_text(result)


def answer_text(result: TurnResult) -> str:
    """What to send back for a finished turn: the answer, or why there is none."""
    outcome = result.outcome
    if outcome.type == "failed":
        reason = outcome.error.message if outcome.error else "the model failed"
        return f"Sorry, I could not answer that: {reason}"
    text = (outcome.content or "").strip()
    if outcome.type == "cancelled":
        return f"{text}\n\n(stopped)" if text else "(stopped before an answer)"
    return text or "(the model gave an empty answer)"
