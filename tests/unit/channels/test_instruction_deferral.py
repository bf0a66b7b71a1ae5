"""Generates put off past their sender's share (`channels.instructions.deferral`)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aio_pika.exceptions import ChannelInvalidStateError, DeliveryError

from patchbay.channels.instructions.answers import fingerprint
from patchbay.channels.instructions.deferral import (
    DEFERRALS_HEADER,
    SINCE_HEADER,
    Deferral,
    Deferrals,
    deferred_copy,
)
from patchbay.channels.instructions.lanes import SenderBusy

NOW_MS = 1_000_000_000


class Incoming(SimpleNamespace):
    """What the consumer reads of a delivered message, and whether it acknowledged it."""

    acked: bool = False

    async def ack(self) -> None:
        self.acked = True


def incoming(**headers: Any) -> Incoming:
    return Incoming(
        body=b'{"type": "LLM_RESPONSE_GENERATE"}',
        headers={"api_key": "pk-alice", "trace": "t1", **headers},
        content_type="application/json",
        content_encoding=None,
        delivery_mode=2,
        priority=3,
        correlation_id="c-1",
        reply_to="replies",
        message_id="m-1",
        timestamp=None,
        type="instruction",
        app_id="client",
        user_id="alice",
    )


class Exchange:
    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.published: list[tuple[aio_pika.Message, str]] = []

    async def publish(self, message: aio_pika.Message, routing_key: str, mandatory: bool) -> None:
        assert mandatory
        if self.error is not None:
            raise self.error
        self.published.append((message, routing_key))


def channel(error: Exception | None = None) -> tuple[AbstractChannel, Exchange]:
    exchange = Exchange(error)
    return cast(AbstractChannel, SimpleNamespace(default_exchange=exchange)), exchange


def as_incoming(message: Any) -> AbstractIncomingMessage:
    return cast(AbstractIncomingMessage, message)


def test_a_message_never_put_off_is_put_off_for_the_first_time_now() -> None:
    assert Deferral.of(None, NOW_MS) == Deferral(0, NOW_MS)
    assert Deferral.of({DEFERRALS_HEADER: 3, SINCE_HEADER: NOW_MS - 5}, NOW_MS) == Deferral(
        3, NOW_MS - 5
    )


@pytest.mark.parametrize(
    "headers",
    [
        {DEFERRALS_HEADER: "3", SINCE_HEADER: NOW_MS},
        {DEFERRALS_HEADER: 3, SINCE_HEADER: NOW_MS + 60_000},  # from the future: never expires
        {DEFERRALS_HEADER: True, SINCE_HEADER: NOW_MS},
        {DEFERRALS_HEADER: -1, SINCE_HEADER: NOW_MS},
        {DEFERRALS_HEADER: 3},
    ],
)
def test_deferral_headers_that_make_no_sense_start_afresh(headers: dict[str, object]) -> None:
    assert Deferral.of(headers, NOW_MS) == Deferral(0, NOW_MS)


def test_delays_double_up_to_a_cap_until_the_useful_life_is_over() -> None:
    delays = [Deferral(n, NOW_MS).delay_s(60, NOW_MS) for n in range(7)]
    assert delays == [1, 2, 4, 8, 15, 15, 15]
    assert Deferral(10**12, NOW_MS).delay_s(60, NOW_MS) == 15  # a sender's huge count is cheap
    assert Deferral(5, NOW_MS - 59_999).delay_s(60, NOW_MS) == 15
    assert Deferral(5, NOW_MS - 60_000).delay_s(60, NOW_MS) is None


def test_a_deferred_copy_keeps_the_message_and_its_delivery_id() -> None:
    message = incoming(**{"x-death": [{"count": 1}], "x-first-death-queue": "q.deferred"})
    copy = deferred_copy(as_incoming(message), Deferral(2, NOW_MS - 10), 4.0)
    assert copy.body == message.body
    assert (copy.reply_to, copy.correlation_id) == ("replies", "c-1")
    assert (copy.content_type, copy.delivery_mode, copy.priority) == ("application/json", 2, 3)
    assert (copy.message_id, copy.type, copy.app_id) == ("m-1", "instruction", "client")
    assert copy.user_id is None  # RabbitMQ refuses a user id other than the consumer's
    assert copy.expiration == 4.0
    assert copy.headers == {
        "api_key": "pk-alice",
        "trace": "t1",
        DEFERRALS_HEADER: 3,
        SINCE_HEADER: NOW_MS - 10,
    }
    # The id the core knows the generate by (`later.py`) is the same when it comes back.
    assert fingerprint(as_incoming(copy)) == fingerprint(as_incoming(message))


async def test_a_message_is_acknowledged_once_its_copy_is_confirmed() -> None:
    deferrals = Deferrals("q", life_s=60, clock=lambda: NOW_MS / 1000)
    to, exchange = channel()
    message = incoming()
    assert await deferrals.defer(to, as_incoming(message), SenderBusy("busy")) is None
    ((copy, routing_key),) = exchange.published
    assert (routing_key, copy.expiration) == ("q.deferred", 1.0)
    assert copy.headers[DEFERRALS_HEADER] == 1
    assert message.acked


async def test_a_message_whose_copy_failed_is_not_acknowledged() -> None:
    deferrals = Deferrals("q", life_s=60)
    to, _ = channel(ChannelInvalidStateError("gone"))
    message = incoming()
    with pytest.raises(ChannelInvalidStateError):  # the consumer hands it back to RabbitMQ
        await deferrals.defer(to, as_incoming(message), SenderBusy("busy"))
    assert not message.acked


async def test_a_message_put_off_too_long_is_refused() -> None:
    deferrals = Deferrals("q", life_s=30, clock=lambda: NOW_MS / 1000)
    to, exchange = channel()
    message = incoming(**{DEFERRALS_HEADER: 4, SINCE_HEADER: NOW_MS - 31_000})
    refused = await deferrals.defer(to, as_incoming(message), SenderBusy("busy"))
    assert refused is not None
    assert (refused.code, refused.retryable) == ("queue_full", True)
    assert "put off" in refused.message
    assert "pk-alice" not in refused.message
    assert not exchange.published
    assert not message.acked  # acknowledged once the refusal is sent


async def test_without_its_deferral_queue_a_message_is_refused_as_busy() -> None:
    deferrals = Deferrals("q", life_s=60)
    to, _ = channel(DeliveryError(None, None))  # type: ignore[arg-type]
    busy = SenderBusy("busy")
    assert await deferrals.defer(to, as_incoming(incoming()), busy) is busy
