"""Generates answered later: the consumer acknowledges a generate once the core has stored its
turn, with its answer owed to this channel (see `channels.owed`), and publishes the answer when
the model is done, so a generate holds a prefetch slot only while its turn is stored.

The answer goes to the request's `reply_to` under its `correlation_id`, in the same envelope the
core answers a generate with. It goes at least once: a consumer that stops before it is sent
sends it after its restart (the core keeps it owed); one that stops between sending it and
telling the core sends it again, the same envelope under the same `correlation_id`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
from aio_pika.abc import AbstractIncomingMessage

from patchbay.channels.base import unique_delivery_id
from patchbay.channels.instructions.answers import fingerprint
from patchbay.channels.instructions.lanes import Ticket
from patchbay.channels.owed import Owed, OwedAnswers
from patchbay.client import ActAs, CoreClient
from patchbay.config import InstructionSettings
from patchbay.errors import NotFound, PatchbayError
from patchbay.schemas.chats import MessageRead
from patchbay.schemas.instructions import (
    GENERATE,
    GENERATED,
    ErrorBody,
    InstructionResult,
    OwedStart,
    generated_data,
)
from patchbay.schemas.jobs import JobEvent
from patchbay.schemas.turns import TurnRead

logger = logging.getLogger(__name__)

CHANNEL = "instructions"
SWEEP_S = 60.0  # how often the answers still owed are looked for (and once at start)
MAX_AGE_S = 24 * 3600.0  # an answer owed longer than this is given up: nobody waits for it
REGENERATE = "LLM_RESPONSE_REGENERATE"
MAX_HOLDER = 200

# Publishes an answer to `reply_to` under `correlation_id`: False when RabbitMQ is away for now.
Publish = Callable[[str, str | None, bytes], Awaitable[bool]]


def generating(body: bytes) -> str | None:
    """`GENERATE` for one generate (answered later), `REGENERATE` for a regenerate or a batch
    holding one (answered when done), None for any other instruction (quick)."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(decoded, dict):
        kind = decoded.get("type")
        return kind if kind in (GENERATE, REGENERATE) else None
    if isinstance(decoded, list) and any(
        isinstance(item, dict) and item.get("type") in (GENERATE, REGENERATE) for item in decoded
    ):
        return REGENERATE
    return None


def holder_of(settings: InstructionSettings) -> str:
    """Who this consumer is to the core when it holds answers: as its settings say, or its host
    and queue, the same after a restart, so it takes back the answers it owed at once."""
    if settings.owed_holder is not None:
        return settings.owed_holder
    holder = f"{socket.gethostname()}/{CHANNEL}/{settings.queue}"
    if len(holder) <= MAX_HOLDER:
        return holder
    return f"{holder[: MAX_HOLDER - 65]}/{hashlib.sha256(holder.encode()).hexdigest()}"


class LaterAnswers:
    """The generates this consumer answers later, and the publishing of their answers."""

    def __init__(self, core: CoreClient, publish: Publish, *, holder: str) -> None:
        self.core = core
        self.holder = holder
        self._publish = publish
        self.owed = OwedAnswers(
            core,
            channel=CHANNEL,
            send=self._send,
            max_age_s=MAX_AGE_S,
            holder=holder,
            sweep_s=SWEEP_S,
        )
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        """Only a module (with the module token) may have answers owed to it."""
        return self.core.module_token is not None

    def ask(self, message: AbstractIncomingMessage) -> OwedStart:
        """What the core is asked to keep for a generate: a stable id for the message (the same
        when RabbitMQ delivers it again) and where its answer goes."""
        key = fingerprint(message)
        delivery = f"amqp:{key.hex()}" if key is not None else unique_delivery_id()
        reply = {"reply_to": message.reply_to, "correlation_id": message.correlation_id}
        return OwedStart(delivery_id=delivery, reply=reply, holder=self.holder)

    def follow(self, asked: OwedStart, answer: bytes, ticket: Ticket) -> None:
        """Answer the generate the core stored as `asked` (its 202 `answer`) in the background;
        `ticket` is released once the answer went (or stays owed, for a later sweep)."""
        self._spawn(self._follow(asked, answer, ticket))

    def sweep_soon(self) -> None:
        """Look for answers owed now (one a message delivered again asked for before)."""
        self._spawn(self._sweep_once())

    async def sweep_forever(self) -> None:
        await self.owed.sweep_forever()

    async def close(self, *, grace_s: float) -> None:
        """Give answers on their way `grace_s` to go; the others stay owed, for the next start."""
        await self.owed.close(grace_s=grace_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background, kept until done (`close` stops what is left)."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, asked: OwedStart, answer: bytes, ticket: Ticket) -> None:
        try:
            data = orjson.loads(answer)["data"]
            turn = TurnRead.model_validate(data["turn"])
            await self.owed.answer(Owed(data["user_id"], asked.delivery_id, turn, data["reply"]))
        except (ValueError, KeyError, TypeError):  # a core that answered otherwise: it is owed
            logger.exception("%s: the core's 202 is not a stored turn; a sweep finds it", CHANNEL)
        finally:
            ticket.release()

    async def _sweep_once(self) -> None:
        try:
            await self.owed.sweep()
        except PatchbayError as exc:
            logger.warning("%s: could not ask for the answers owed: %s", CHANNEL, exc)

    async def _send(self, reply: dict[str, object], outcome: JobEvent) -> bool:
        to, correlation_id, instruction = _where(reply)
        user = instruction.get("user_id")
        if not isinstance(user, str):
            raise ValueError("the owed answer does not say who asked")
        ref = instruction.get("id")
        result = await self._result(user, ref if isinstance(ref, str) else None, outcome)
        return await self._publish(
            to, correlation_id, result.model_dump_json(exclude_none=True).encode()
        )

    async def _result(self, user: str, ref: str | None, outcome: JobEvent) -> InstructionResult:
        """The envelope the core answers a generate with, once its job has ended."""
        if outcome.type != "done":
            error = outcome.error
            message = error.message if error else "the generation failed"
            body = ErrorBody(
                code=error.code if error else "internal_error",
                message=message,
                retryable=error.retryable if error else False,
            )
            return InstructionResult(
                status="error", type=GENERATE, id=ref, message=message, error=body
            )
        key = ActAs(user)
        job = await self.core.job(outcome.job_id, key=key)
        try:
            listed = await self.core.call_as(
                list[MessageRead], "GET", f"/v1/chats/{job.chat_id}/messages", key=key
            )
        except NotFound:  # the chat was deleted meanwhile
            listed = []
        messages = {m.id: m for m in listed}
        answer = messages.get(job.message_id)
        question = messages.get(answer.parent_id or "") if answer is not None else None
        data = generated_data(
            chat_id=job.chat_id,
            job_id=job.id,
            text=outcome.content,
            question=question,
            answer=answer,
        )
        return InstructionResult(
            status="success", type=GENERATE, id=ref, message=GENERATED, data=data
        )


def _where(reply: dict[str, object]) -> tuple[str, str | None, dict[str, Any]]:
    """The reply queue, correlation id and instruction an owed answer goes to."""
    to, correlation_id, instruction = (
        reply.get("reply_to"),
        reply.get("correlation_id"),
        reply.get("instruction"),
    )
    if not isinstance(to, str) or not to or not isinstance(instruction, dict):
        raise ValueError("the owed answer has no reply queue")
    return to, correlation_id if isinstance(correlation_id, str) else None, instruction
