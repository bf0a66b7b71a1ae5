"""Generates past their sender's share, put off: sent to `<queue>.deferred` to come back later.

A sender with its generates answered at once and as many waiting (`lanes.py`) sends more: each
is published again, as it came, to a queue nobody consumes, with its delay as the message's
`expiration`; RabbitMQ dead-letters it back to the instruction queue once that passes, behind
what others sent meanwhile. The delays double from 1 s to 15 s; one put off for longer than its
sender waits for an answer (`timeout_s`) is answered `queue_full` instead, so none waits for ever.
RabbitMQ expires messages at the head of a queue only, so one may come back after a longer
delay ahead of it (15 s at most): a delay here is a back-off, not a schedule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, HeadersType
from aio_pika.exceptions import DeliveryError

from patchbay.backoff import Backoff
from patchbay.channels.instructions.lanes import SenderBusy

logger = logging.getLogger(__name__)

DEFERRALS_HEADER = "x-patchbay-deferrals"  # how many times the message was put off
SINCE_HEADER = "x-patchbay-deferred-since"  # when it was first put off, in ms since the epoch
BACKOFF = Backoff(first_s=1.0, cap_s=15.0)
MAX_COUNTED = 64  # past this many deferrals the delay is the cap anyway
# What RabbitMQ adds as it dead-letters a message: not the sender's, and not to be sent back.
BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-")


def put_off(message: AbstractIncomingMessage) -> bool:
    """Whether `message` is a copy of one put off here (as its headers say)."""
    return DEFERRALS_HEADER in (message.headers or {})


@dataclass(frozen=True, slots=True)
class Deferral:
    """How often and since when (ms since the epoch) a message was put off."""

    count: int
    since_ms: int

    @classmethod
    def of(cls, headers: Mapping[str, object] | None, now_ms: int) -> Deferral:
        """The deferral the headers tell of; a message never put off (or with headers that make
        no sense, as a sender may set them) is put off for the first time now."""
        headers = headers or {}
        count, since = headers.get(DEFERRALS_HEADER), headers.get(SINCE_HEADER)
        if (
            not isinstance(count, int)
            or not isinstance(since, int)
            or isinstance(count, bool)
            or isinstance(since, bool)
            or count < 1
            or since > now_ms
        ):
            return cls(0, now_ms)
        return cls(count, since)

    def delay_s(self, life_s: float, now_ms: int, backoff: Backoff = BACKOFF) -> float | None:
        """How long to put the message off this time; None once it was put off for `life_s`."""
        if now_ms - self.since_ms >= life_s * 1000:
            return None
        *_, delay = backoff.delays(min(self.count, MAX_COUNTED) + 1)
        return delay

    def headers(self, headers: HeadersType | None) -> HeadersType:
        """The message's headers, counting this deferral, without what RabbitMQ added."""
        kept = {
            name: value
            for name, value in (headers or {}).items()
            if not name.startswith(BROKER_HEADERS)
        }
        return {**kept, DEFERRALS_HEADER: self.count + 1, SINCE_HEADER: self.since_ms}


def deferred_copy(
    message: AbstractIncomingMessage, deferral: Deferral, delay_s: float
) -> aio_pika.Message:
    """The message as it came (body, reply queue, correlation id, headers and properties), to
    come back after `delay_s`. Its `user_id` is left out: RabbitMQ refuses one not ours."""
    return aio_pika.Message(
        message.body,
        headers=deferral.headers(message.headers),
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=message.delivery_mode,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        expiration=delay_s,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )


class Deferrals:
    """Puts off the generates of a sender past its share, through `<queue>.deferred`."""

    def __init__(
        self, queue: str, *, life_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.queue = queue
        self.name = f"{queue}.deferred"
        self.life_s = life_s
        self._clock = clock

    async def declare(self, channel: AbstractChannel) -> None:
        """Declare the deferral queue: what expires in it goes back to the instruction queue."""
        arguments: HeadersType = {
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.queue,
        }
        await channel.declare_queue(self.name, durable=True, arguments=arguments)

    async def defer(
        self, channel: AbstractChannel, message: AbstractIncomingMessage, busy: SenderBusy
    ) -> SenderBusy | None:
        """Put the message off and acknowledge it once RabbitMQ confirmed its copy; or the
        refusal to answer it with (put off too long, or the deferral queue is gone).

        Raises what RabbitMQ raises when it fails: the message is then delivered again."""
        now_ms = int(self._clock() * 1000)
        deferral = Deferral.of(message.headers, now_ms)
        delay = deferral.delay_s(self.life_s, now_ms)
        if delay is None:
            return SenderBusy(
                f"this API key kept its generates busy for the {self.life_s:.0f} s this one "
                f"was put off ({deferral.count} times); send it again later"
            )
        copy = deferred_copy(message, deferral, delay)
        try:
            await channel.default_exchange.publish(copy, routing_key=self.name, mandatory=True)
        except DeliveryError:  # returned: the deferral queue was deleted under us
            logger.warning("the deferral queue %s is gone: generate refused", self.name)
            return busy
        await message.ack()
        logger.info(
            "instruction %r: its sender's generates are busy; put off %.0f s (deferral %d)",
            message.correlation_id,
            delay,
            deferral.count + 1,
        )
        return None
