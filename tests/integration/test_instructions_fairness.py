"""The instruction API's generates over the real RabbitMQ: one sender's flood of generates against
a slow model holds nobody else back, and a generate acknowledged before its answer is answered
after the consumer restarts. Answers are compared by the order they arrive in, never by times."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from patchbay.api.app import create_app as create_core
from patchbay.channels.instructions.deferral import DEFERRALS_HEADER, SINCE_HEADER
from patchbay.config import InstructionSettings
from tests.conftest import ADMIN_KEY, make_settings
from tests.integration.test_instructions_rabbitmq import (
    collect_answers,
    instruction,
    publish_raw,
    queue,  # noqa: F401 - the fixture
)
from tests.support.rabbitmq import amqp_channel, consuming, queue_depth
from tests.support.servers import serve_in_thread
from tests.support.upstream import MockUpstream

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL_S = 3.0  # how long the model takes over each answer


@pytest.fixture
def model() -> Iterator[MockUpstream]:
    with MockUpstream.running() as mock:
        mock.mode, mock.delay_s = "slow", MODEL_S
        yield mock


@pytest.fixture
def core(tmp_path: Path, model: MockUpstream) -> Iterator[str]:
    """A core whose default model is the slow one; its base URL."""
    settings = make_settings(tmp_path)
    with serve_in_thread(create_core(settings), settings.core.port) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
            provider = {"name": "mock", "kind": "openai", "api_base": model.base_url}
            admin.post("/v1/providers", json={**provider, "api_key": "sk-mock"}).raise_for_status()
            default = {
                "name": "slow",
                "provider": "mock",
                "upstream_model": "m",
                "is_default": True,
            }
            admin.post("/v1/models", json=default).raise_for_status()
        yield url


def user_key(core_url: str, name: str) -> str:
    with httpx.Client(base_url=core_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        user = admin.post("/v1/users", json={"name": name}).raise_for_status().json()
        issued = admin.post(f"/v1/users/{user['id']}/keys", json={}).raise_for_status()
    return str(issued.json()["key"])


def generate(text: str) -> bytes:
    return instruction("LLM_RESPONSE_GENERATE", user_input=text).encode()


def test_a_flood_of_generates_holds_back_no_other_sender_and_is_all_answered(
    queue: str,  # noqa: F811
    core: str,
    model: MockUpstream,
) -> None:
    replies = queue + ".replies"
    per_key = 2
    settings = InstructionSettings(
        queue=queue, prefetch=4, generates_per_key=per_key, timeout_s=600
    )
    bob = user_key(core, "bob")
    with consuming(settings, core_url=core):
        # Three times the share: past what may run and wait at once, the rest is put off.
        flood = asyncio.run(
            publish_raw(
                queue, [generate(f"flood {i}") for i in range(6 * per_key)], reply_to=replies
            )
        )
        (listing,) = asyncio.run(
            publish_raw(queue, [instruction("LLM_LIST").encode()], reply_to=replies, key=bob)
        )
        (asked,) = asyncio.run(publish_raw(queue, [generate("mine")], reply_to=replies, key=bob))
        answers = asyncio.run(collect_answers(replies, {*flood, listing, asked}, timeout_s=300))
    assert answers.keys() == {*flood, listing, asked}
    order = list(answers)  # as they arrived
    generated = [c for c in order if c != listing]
    # Bob's look-up is answered before any of the flood's generates, and his generate after
    # at most the ones the flood may have answered at once.
    assert order.index(listing) < order.index(generated[0])
    assert answers[listing][0]["type"] == "LLM_LIST"
    assert generated.index(asked) <= per_key, [c == asked for c in generated]
    # Every generate of the flood is answered, once, as the model found the time: none refused.
    for correlation_id in generated:
        (answer,) = answers[correlation_id]
        assert answer["status"] == "success", answer
        assert answer["data"]["llm_response"] == "Hello from the mock upstream."
    assert sorted(answers[c][0]["data"]["user_message"]["content"] for c in flood) == sorted(
        f"flood {i}" for i in range(6 * per_key)
    )
    assert len(model.requests) == len(flood) + 1  # none generated twice
    assert asyncio.run(queue_depth(queue + ".deferred")) == 0


def test_a_generate_put_off_longer_than_its_sender_waits_is_refused(
    queue: str,  # noqa: F811
    core: str,
    model: MockUpstream,
) -> None:
    replies = queue + ".replies"
    # One answered at once, one waiting; the rest put off for at most 2 s, well under the
    # model's 3 s for each: some are answered queue_full, none is put off for ever.
    settings = InstructionSettings(queue=queue, generates_per_key=1, timeout_s=2.0)
    with consuming(settings, core_url=core):
        flood = asyncio.run(
            publish_raw(queue, [generate(f"flood {i}") for i in range(6)], reply_to=replies)
        )
        answers = asyncio.run(collect_answers(replies, set(flood), timeout_s=120))
    assert answers.keys() == set(flood)
    outcomes = [answers[c] for c in flood]
    assert all(len(answer) == 1 for answer in outcomes)
    refused = [a["error"] for (a,) in outcomes if a["status"] == "error"]
    assert refused, "nothing was put off too long"
    assert {(r["code"], r["retryable"]) for r in refused} == {("queue_full", True)}
    assert all("put off" in r["message"] for r in refused), refused
    answered = [a for (a,) in outcomes if a["status"] == "success"]
    assert len(answered) + len(refused) == len(flood)
    assert len(model.requests) == len(answered)  # the refused never reached the model
    assert asyncio.run(queue_depth(queue + ".deferred")) == 0


def test_a_generate_acknowledged_before_its_answer_is_answered_after_a_restart(
    queue: str,  # noqa: F811
    core: str,
    model: MockUpstream,
) -> None:
    replies = queue + ".replies"
    settings = InstructionSettings(queue=queue)
    with consuming(settings, core_url=core, grace_s=0.2):
        (asked,) = asyncio.run(publish_raw(queue, [generate("wait for me")], reply_to=replies))
        deadline = time.monotonic() + 30
        while not model.requests:  # the model is writing the answer
            assert time.monotonic() < deadline, "the generate never reached the model"
            time.sleep(0.05)
    # Stopped before the answer: nothing is left in the queue to run again...
    assert asyncio.run(queue_depth(queue)) == 0
    with consuming(settings, core_url=core):
        answers = asyncio.run(collect_answers(replies, {asked}, timeout_s=60))
    # ...and the consumer that came back sends the answer, of the one generation made.
    (answer,) = answers[asked]
    assert answer["status"] == "success", answer
    assert answer["type"] == "LLM_RESPONSE_GENERATE"
    assert answer["data"]["llm_response"] == "Hello from the mock upstream."
    assert answer["data"]["user_message"]["content"] == "wait for me"
    assert len(model.requests) == 1


def test_a_copy_put_off_that_comes_after_its_original_was_stored_is_not_answered_again(
    queue: str,  # noqa: F811
    core: str,
    model: MockUpstream,
) -> None:
    """A consumer that stopped after a put-off copy was confirmed and before its original was
    acknowledged: both come; the one that comes second finds the turn stored."""
    replies = queue + ".replies"
    model.delay_s = 0.0
    body = generate("once")

    async def publish(headers: dict[str, Any]) -> None:
        async with amqp_channel() as channel:
            await channel.default_exchange.publish(
                aio_pika.Message(body, correlation_id="c-1", reply_to=replies, headers=headers),
                routing_key=queue,
            )

    settings = InstructionSettings(queue=queue)
    with consuming(settings, core_url=core):
        asyncio.run(publish({"api_key": ADMIN_KEY}))
        first = asyncio.run(collect_answers(replies, {"c-1"}, timeout_s=60))
        since = int(time.time() * 1000)
        copy = {"api_key": ADMIN_KEY, DEFERRALS_HEADER: 1, SINCE_HEADER: since}
        asyncio.run(publish(copy))
        deadline = time.monotonic() + 30
        while asyncio.run(queue_depth(queue)) > 0:  # taken by the consumer
            assert time.monotonic() < deadline
            time.sleep(0.05)
        asked = asyncio.run(
            publish_raw(queue, [instruction("LLM_LIST").encode()], reply_to=replies)
        )
        later = asyncio.run(collect_answers(replies, set(asked), timeout_s=60))
    assert [a["status"] for a in first["c-1"]] == ["success"]
    assert "c-1" not in later  # the copy was not generated and answered again
    assert len(model.requests) == 1
