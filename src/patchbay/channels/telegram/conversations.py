"""What a chat channel does with each message: turn floods away, resolve the sender under the
channel's policy, run a turn (one at a time per thread, so answers come in order) and reply.

A channel hands over an `Inbound` and a `reply` callable that delivers (and chunks) a note (a
pairing code, an apology), and sends answers with the `send` of its `OwedAnswers`; this module
never speaks a protocol. Nothing here is Telegram-specific; the XMPP channel uses it too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from patchbay.channels.base import Channel, pairing_message, unique_delivery_id
from patchbay.channels.limits import FloodGate, InOrder, KeyedLock
from patchbay.channels.owed import Owed, OwedAnswers
from patchbay.errors import DuplicateDelivery, PatchbayError
from patchbay.schemas.jobs import JobEvent
from patchbay.schemas.options import MAX_TEXT
from patchbay.schemas.turns import AttachmentIn

logger = logging.getLogger(__name__)

Reply = Callable[[str], Awaitable[None]]
FetchFiles = Callable[[], Awaitable[Sequence[AttachmentIn]]]
Follow = Callable[[], Awaitable[object]]

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
    # Where the answer goes, as the channel's `send` reads it (a Telegram chat and message):
    # kept in the core while the answer is owed, so it goes out after a restart too.
    reply_to: dict[str, object]
    display_name: str | None = None
    metadata: dict[str, object] = field(default_factory=dict)
    files: FetchFiles | None = None  # fetched only once the sender is let in
    delivery_id: str | None = None  # the channel's id for the message: answered once, ever


class Conversations:
    """Runs what senders write as turns in `channel`, at most `per_minute` messages per sender;
    the answers go out through `answers` (the channel's `send`), owed in the core until they did.
    """

    def __init__(self, channel: Channel[Any], answers: OwedAnswers, *, per_minute: int) -> None:
        self.channel = channel
        self.answers = answers
        self.gate = FloodGate(per_minute)
        self.threads = KeyedLock()  # a thread's messages, stored one after another
        self.answering = InOrder()  # a thread's answers, sent one after another

    async def handle(self, inbound: Inbound, reply: Reply) -> None:
        """Answer `inbound`; a flooding sender's excess is dropped unanswered (one notice first,
        through `reply`, as are pairing codes and apologies) and never reaches the core, and a
        message the core took before (its `delivery_id`) is not answered again."""
        verdict = self.gate.check(inbound.address)
        if verdict != "pass":
            logger.info("%s: a sender floods; message dropped", self.channel.name)
            if verdict == "warn":
                await reply(FLOOD_NOTICE)
            return
        started = time.monotonic()
        # A thread's messages reach the core in the order they came, each stored at once (its
        # answer starts once the one before has ended), so none waits in this process's memory,
        # where a restart would lose it; their answers go out in that order too. Python's locks
        # are first come, first served, and this task lines up for its answer before the next
        # message's can take the turns' lock.
        async with self.threads.hold(inbound.thread):
            taken = await self._start(inbound)
            place = self.answering.line_up(inbound.thread)
        async with place:
            if isinstance(taken, str):
                await reply(taken)
            elif not isinstance(taken, Owed):
                await taken()
            else:
                await self.answers.answer(taken)
                logger.info(
                    "%s: turn %s answered in %.2fs",
                    self.channel.name,
                    taken.turn.job_id,
                    time.monotonic() - started,
                )

    async def _start(self, inbound: Inbound) -> Owed | str | Follow:
        """Store the turn: its answer owed; or what to say instead; or, for a message the core
        took before, how to follow its answer."""
        # Every message is a delivery, so its answer can be owed: one without an id of its own
        # (some XMPP clients') gets one that never repeats.
        delivery = inbound.delivery_id or unique_delivery_id()
        try:
            name = inbound.display_name[:MAX_NAME] if inbound.display_name else None
            who = await self.channel.sender(inbound.address, name)
            if who.user is None:
                return pairing_message(who)
            user_id = who.user.id
            attachments = list(await inbound.files()) if inbound.files else []
            if not inbound.text.strip() and not attachments:
                return NOTHING_TO_READ
            if len(inbound.text) > MAX_TEXT:
                return TOO_LONG
            try:
                created = await self.channel.start_turn(
                    user_id,
                    inbound.text,
                    thread=inbound.thread,
                    attachments=attachments,
                    metadata=inbound.metadata,
                    delivery_id=delivery,
                    reply=inbound.reply_to,
                    holder=self.answers.holder,
                    behind=True,
                )
            except DuplicateDelivery as exc:
                logger.info("%s: a message taken before came again", self.channel.name)
                return partial(self.answers.follow_taken, exc, user_id, delivery, inbound.reply_to)
        except PatchbayError as exc:
            logger.warning("%s: no answer (%s: %s)", self.channel.name, exc.code, exc.message)
            return f"Sorry, I could not answer that: {exc.message}"
        return Owed(user_id, delivery, created, inbound.reply_to)


def outcome_text(outcome: JobEvent) -> str:
    """What to send back for a job's terminal event: the answer, or why there is none."""
    if outcome.type == "failed":
        reason = outcome.error.message if outcome.error else "the model failed"
        return f"Sorry, I could not answer that: {reason}"
    text = (outcome.content or "").strip()
    if outcome.type == "cancelled":
        return f"{text}\n\n(stopped)" if text else "(stopped before an answer)"
    return text or "(the model gave an empty answer)"
