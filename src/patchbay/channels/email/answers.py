"""Following stored turns to their end and mailing the answers back, beside the SMTP server.

A mail is accepted once its turn is stored with a `reply` (what a reply needs of the mail): from
then on the core holds its answer as owed to this channel until the channel says it sent it. So
the answers owed survive the channel: every `sweep_s` (and at start) the channel asks the core
which answers it still owes and follows each one it is not following already; an answer the
relay would not take stays owed for the next sweep. A reply is sent at least once: if the channel
stops between handing it to the relay and telling the core, it is sent again after the restart.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from patchbay.channels.email import compose
from patchbay.channels.email.compose import ReplyTo
from patchbay.channels.email.relay import Relay
from patchbay.client import ActAs, CoreClient
from patchbay.errors import CoreUnavailable, NotFound, PatchbayError
from patchbay.schemas.chats import MessageRead
from patchbay.schemas.deliveries import AnswerSent, OwedAnswer
from patchbay.schemas.jobs import JobEvent
from patchbay.schemas.turns import TurnRead

logger = logging.getLogger(__name__)

FOLLOW_TRIES = 60  # reconnects to a core that went away, backing off to a minute: about an hour
MAX_OWED = 500  # answers asked for per sweep


def answer_text(outcome: JobEvent) -> str:
    """What the reply says for a job's terminal event."""
    if outcome.type == "done":
        return outcome.content or "(The model gave no answer.)"
    if outcome.type == "cancelled":
        return (outcome.content or "") + "\n\n(The answer was stopped before its end.)"
    reason = outcome.error.message if outcome.error else "the model failed"
    return f"Sorry, there is no answer this time: {reason}. Write again to try once more."


@dataclass(frozen=True, slots=True)
class Owed:
    """An answer this channel owes: whose, for which delivery, its turn, and how to reply."""

    user_id: str
    delivery_id: str
    turn: TurnRead
    reply_to: ReplyTo

    @property
    def key(self) -> str:
        return f"{self.user_id} {self.delivery_id}"


class Answers:
    """One task per answer owed: wait for its job's outcome, reply through the relay, tell the
    core it went out."""

    def __init__(
        self,
        core: CoreClient,
        relay: Relay,
        *,
        channel: str,
        address: str,
        max_age_s: float,
    ) -> None:
        self.core = core
        self.relay = relay
        self.channel = channel
        self.address = address
        self.max_age_s = max_age_s
        self._following: dict[str, asyncio.Task[None]] = {}

    def following(self, user_id: str, delivery_id: str) -> bool:
        return f"{user_id} {delivery_id}" in self._following

    def follow(self, owed: Owed) -> None:
        """Answer `owed` (once: an answer already followed here is left to its task)."""
        if owed.key in self._following:
            return
        task = asyncio.create_task(self._answer(owed))
        self._following[owed.key] = task
        task.add_done_callback(lambda _task: self._following.pop(owed.key, None))

    async def sweep_forever(self, interval_s: float) -> None:
        """Follow the answers the core says this channel owes, now and every `interval_s`."""
        while True:
            try:
                await self.sweep()
            except PatchbayError as exc:
                logger.warning("could not ask the core for the answers owed: %s", exc.message)
            await asyncio.sleep(interval_s)

    async def sweep(self) -> None:
        now = datetime.now(UTC)
        for owed in await self.core.owed_answers(self.channel, limit=MAX_OWED):
            key = f"{owed.user_id} {owed.delivery_id}"
            if key in self._following:
                continue
            age_s = (now - owed.created_at).total_seconds()
            try:
                reply_to = ReplyTo.from_json(owed.reply)
            except ValueError as exc:
                logger.error("giving up the answer to %s: %s", owed.delivery_id, exc)
                await self.core.answer_sent(_sent(owed))
                continue
            if age_s > self.max_age_s:
                logger.warning(
                    "giving up the answer to %s from %s: owed for %.0f h",
                    owed.delivery_id,
                    reply_to.sender,
                    age_s / 3600,
                )
                await self.core.answer_sent(_sent(owed))
                continue
            logger.info("answering %s (job %s), owed since %s", key, owed.job_id, owed.created_at)
            self.follow(Owed(owed.user_id, owed.delivery_id, _turn(owed), reply_to))

    async def close(self) -> None:
        """Stop following (the answers stay owed in the core, for the next start)."""
        tasks = list(self._following.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _answer(self, owed: Owed) -> None:
        job = owed.turn.job_id
        try:
            text = await self._text(owed.user_id, owed.turn)
            message = compose.reply(owed.reply_to, sender=self.address, text=text)
            if not await self.relay.deliver(message):
                logger.warning("the answer to %s stays owed: the relay did not take it", owed.key)
                return
            logger.info("answered %s (job %s)", owed.reply_to.message_id or owed.key, job)
            await self._sent(owed.user_id, owed.delivery_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # a task's boundary: log it, keep the channel going
            logger.exception("could not answer %s (job %s); it stays owed", owed.key, job)

    async def _sent(self, user_id: str, delivery_id: str) -> None:
        """Tell the core the answer went out, trying while it is away (until then a sweep here
        skips it, as it is still being followed)."""
        sent = AnswerSent(channel=self.channel, user_id=user_id, delivery_id=delivery_id)
        delay = 1.0
        for _ in range(FOLLOW_TRIES):
            try:
                await self.core.answer_sent(sent)
                return
            except CoreUnavailable as exc:
                logger.warning("could not tell the core %s was answered: %s", delivery_id, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)
        logger.error("the core never heard that %s was answered; it may be sent again", delivery_id)

    async def _text(self, user_id: str, created: TurnRead) -> str:
        after, delay = 0, 1.0
        for _ in range(FOLLOW_TRIES):
            try:
                async with self.core.job_events(
                    created.job_id, after=after, key=ActAs(user_id)
                ) as batches:
                    async for batch in batches:
                        for event in batch:
                            after = event.seq
                            if event.terminal:
                                return answer_text(event)
            except NotFound:  # its events are gone (kept a while after the end): read the chat
                return await self._stored_answer(user_id, created)
            except CoreUnavailable as exc:
                logger.warning("following job %s: %s", created.job_id, exc.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)
        raise CoreUnavailable(f"lost job {created.job_id}: the core stayed away")

    async def _stored_answer(self, user_id: str, created: TurnRead) -> str:
        messages = await self.core.call_as(
            list[MessageRead], "GET", f"/v1/chats/{created.chat_id}/messages", key=ActAs(user_id)
        )
        found = next((m for m in messages if m.id == created.assistant_message_id), None)
        if found is None or not found.content:
            return "Sorry, the answer to this mail was lost. Write again to try once more."
        return found.content


def _sent(owed: OwedAnswer) -> AnswerSent:
    return AnswerSent(channel=owed.channel, user_id=owed.user_id, delivery_id=owed.delivery_id)


def _turn(owed: OwedAnswer) -> TurnRead:
    return TurnRead(
        chat_id=owed.chat_id,
        job_id=owed.job_id,
        user_message_id=owed.user_message_id,
        assistant_message_id=owed.assistant_message_id,
        model=owed.model,
    )
