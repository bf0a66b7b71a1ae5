"""The instruction consumer's pure parts: addresses, keys, its own envelopes, recent answers."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage

from patchbay.channels.instructions import address
from patchbay.channels.instructions.answers import RecentAnswers
from patchbay.channels.instructions.consumer import _api_key, as_envelope, error_envelope
from patchbay.channels.instructions.later import holder_of
from patchbay.config import InstructionSettings
from patchbay.errors import CoreUnavailable


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://guest:guest@localhost/", "amqp://localhost:5672/q"),
        ("amqps://u:p@rabbit.example:5999/vhost?heartbeat=30", "amqps://rabbit.example:5999/q"),
        ("amqps://rabbit.example", "amqps://rabbit.example:5671/q"),
        ("amqp://u:p@[::1]:5672/", "amqp://[::1]:5672/q"),
    ],
)
def test_address_never_shows_credentials(url: str, shown: str) -> None:
    assert address(url, "q") == shown


def message(headers: dict[str, Any] | None) -> AbstractIncomingMessage:
    return cast(AbstractIncomingMessage, SimpleNamespace(headers=headers))


@pytest.mark.parametrize(
    ("headers", "key", "bad"),
    [
        (None, None, False),
        ({}, None, False),
        ({"api_key": "pb-123"}, "pb-123", False),
        ({"api_key": b"pb-123"}, "pb-123", False),
        ({"api_key": b"\xff"}, None, True),
        ({"api_key": 42}, None, True),
        ({"api_key": "pb\r\nX-Injected: 1"}, None, True),
        ({"api_key": "clé"}, None, True),
    ],
)
def test_the_key_comes_from_the_api_key_header(
    headers: dict[str, Any] | None, key: str | None, bad: bool
) -> None:
    assert _api_key(message(headers)) == (key, bad)


def test_the_consumers_own_envelope_has_the_cores_shape() -> None:
    envelope = orjson.loads(error_envelope(CoreUnavailable("the core is away")))
    assert envelope == {
        "status": "error",
        "type": None,
        "message": "the core is away",
        "error": {"code": "core_unavailable", "message": "the core is away", "retryable": True},
    }


@pytest.mark.parametrize(
    ("status", "answer", "code"),
    [
        (
            413,
            b'{"error": {"code": "payload_too_large", "message": "too big"}}',
            "payload_too_large",
        ),
        (500, b"Internal Server Error", "internal_error"),
        (503, b'{"error": {"code": "store_unavailable", "message": "db"}}', "store_unavailable"),
    ],
)
def test_errors_from_outside_the_route_become_envelopes(
    status: int, answer: bytes, code: str
) -> None:
    envelope = orjson.loads(as_envelope(status, answer))
    assert (envelope["status"], envelope["type"], envelope["error"]["code"]) == (
        "error",
        None,
        code,
    )
    assert envelope["error"]["retryable"] is (status == 503)


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (200, b'{"status": "success", "type": "USER_LIST", "message": "1 users", "data": {}}'),
        (200, b"not even looked at"),
        (404, b'{"status": "error", "type": "CHAT_LOAD", "message": "m", "error": {}}'),
        (200, b"[]"),
    ],
)
def test_envelopes_pass_untouched(status: int, answer: bytes) -> None:
    assert as_envelope(status, answer) is answer


def delivery(body: bytes = b"{}", *, redelivered: bool, correlation_id: str | None = "c1") -> Any:
    return SimpleNamespace(
        body=body,
        headers={"api_key": "pb-1"},
        reply_to="replies",
        correlation_id=correlation_id,
        redelivered=redelivered,
    )


class Core:
    """Counts how often an instruction really runs."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.runs = 0

    async def run(self) -> tuple[int, bytes]:
        self.runs += 1
        await asyncio.sleep(0.01)
        return self.status, b'{"status": "success"}'


async def test_an_instruction_delivered_again_gets_its_first_answer() -> None:
    answers, core = RecentAnswers(), Core()
    first = await answers.once(delivery(redelivered=False), core.run)
    again = await answers.once(delivery(redelivered=True), core.run)
    assert (first, again, core.runs) == (
        ((200, b'{"status": "success"}'), False),
        (first[0], True),
        1,
    )


async def test_one_delivered_again_while_it_runs_waits_for_that_run() -> None:
    answers, core = RecentAnswers(), Core()
    both = await asyncio.gather(
        answers.once(delivery(redelivered=False), core.run),
        answers.once(delivery(redelivered=True), core.run),
    )
    assert [again for _, again in both] == [False, True] and core.runs == 1


@pytest.mark.parametrize(
    ("first", "second", "runs"),
    [
        ({"redelivered": False}, {"redelivered": False}, 2),  # sent twice on purpose: runs twice
        (
            {"correlation_id": None, "redelivered": False},
            {"correlation_id": None, "redelivered": True},
            2,
        ),
        ({"redelivered": False}, {"body": b"[]", "redelivered": True}, 2),  # not the same request
    ],
)
async def test_only_the_same_request_delivered_again_is_answered_from_memory(
    first: dict[str, Any], second: dict[str, Any], runs: int
) -> None:
    answers, core = RecentAnswers(), Core()
    await answers.once(delivery(**first), core.run)
    await answers.once(delivery(**second), core.run)
    assert core.runs == runs


async def test_server_errors_are_not_remembered_and_memory_is_bounded() -> None:
    answers, failing = RecentAnswers(limit=2), Core(status=503)
    await answers.once(delivery(redelivered=False), failing.run)
    await answers.once(delivery(redelivered=True), failing.run)
    assert failing.runs == 2 and len(answers) == 0
    ok = Core()
    for n in range(3):
        await answers.once(delivery(redelivered=False, correlation_id=f"c{n}"), ok.run)
    assert len(answers) == 2
    await answers.once(delivery(redelivered=True, correlation_id="c0"), ok.run)  # forgotten
    assert ok.runs == 4


def test_a_consumer_holds_answers_as_its_host_and_queue_unless_told() -> None:
    default = holder_of(InstructionSettings(queue="q1"))
    assert default == f"{socket.gethostname()}/instructions/q1"
    assert holder_of(InstructionSettings(queue="q2")) != default  # each queue its own
    assert holder_of(InstructionSettings(queue="q1", owed_holder="box/2")) == "box/2"
    long = holder_of(InstructionSettings(queue="q" * 300))
    assert len(long) == 200 and long != holder_of(InstructionSettings(queue="q" * 299))
