"""Following a stored turn to its end and mailing the answer back, beside the SMTP server: the
mail was accepted once its turn was stored, so from here on the answer is the channel's to send."""

from __future__ import annotations

import asyncio
import logging

from patchbay.channels.email import compose
from patchbay.channels.email.parse import InboundMail
from patchbay.channels.email.relay import Relay
from patchbay.client import ActAs, CoreClient
from patchbay.errors import CoreUnavailable, NotFound
from patchbay.schemas.chats import MessageRead
from patchbay.schemas.jobs import JobEvent
from patchbay.schemas.turns import TurnRead

logger = logging.getLogger(__name__)

FOLLOW_TRIES = 60  # reconnects to a core that went away, backing off to a minute: about an hour


def answer_text(outcome: JobEvent) -> str:
    """What the reply says for a job's terminal event."""
    if outcome.type == "done":
        return outcome.content or "(The model gave no answer.)"
    if outcome.type == "cancelled":
        return (outcome.content or "") + "\n\n(The answer was stopped before its end.)"
    reason = outcome.error.message if outcome.error else "the model failed"
    return f"Sorry, there is no answer this time: {reason}. Write again to try once more."


class Answers:
    """One task per accepted mail: wait for its job's outcome, then reply through the relay."""

    def __init__(self, core: CoreClient, relay: Relay, *, address: str) -> None:
        self.core = core
        self.relay = relay
        self.address = address
        self._tasks: set[asyncio.Task[None]] = set()

    def follow(self, mail: InboundMail, user_id: str, created: TurnRead) -> None:
        task = asyncio.create_task(self._answer(mail, user_id, created))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop following (the answers stay in the core's chats)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _answer(self, mail: InboundMail, user_id: str, created: TurnRead) -> None:
        try:
            text = await self._text(user_id, created)
            message = compose.reply(mail, sender=self.address, text=text)
            if await self.relay.deliver(message):
                logger.info("answered %s (job %s)", mail.key, created.job_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # a task's boundary: log it, keep the channel going
            logger.exception("could not answer the mail %s (job %s)", mail.key, created.job_id)

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
