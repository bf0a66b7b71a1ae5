"""Helpers as tools during a turn: offered to the model, called, fed back, recorded; a failing or
absent helper never breaks the answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from patchbay.schemas.helpers import HELPER_KEY_HEADER
from patchbay.tokens import helper_key
from tests.support.hand_helper import HandHelper, running_helper
from tests.support.stack import Stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration


@pytest.fixture
def helper(stack: Stack) -> Iterator[HandHelper]:
    with running_helper() as hand:
        key = {HELPER_KEY_HEADER: helper_key(stack.settings.installation_secret())}
        httpx.post(f"{stack.core_url}/v1/helpers", json=hand.manifest(), headers=key)
        yield hand


def turn(stack: Stack, *, stream: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    headers = {"Authorization": f"Bearer {stack.admin_key}"}
    result = httpx.post(
        f"{stack.core_url}/v1/turns?wait=true",
        json={"text": "What is 2 + 3?", "stream": stream},
        headers=headers,
        timeout=30,
    ).json()
    chat_id = result["turn"]["chat_id"]
    answer = httpx.get(f"{stack.core_url}/v1/chats/{chat_id}/messages", headers=headers).json()[-1]
    return result["outcome"], answer


@pytest.mark.parametrize("stream", [True, False])
def test_the_model_calls_a_helper_and_answers_with_its_result(
    stack: Stack, upstream: MockUpstream, helper: HandHelper, stream: bool
) -> None:
    upstream.mode, upstream.tool_arguments = "tools", {"a": 2, "b": 3}
    outcome, answer = turn(stack, stream=stream)
    assert outcome["type"] == "done"
    assert outcome["content"] == 'The tool said: {"sum":5}'
    offered = upstream.requests[0]["tools"]
    assert [t["function"]["name"] for t in offered] == ["calc__add"]
    assert offered[0]["function"]["parameters"]["required"] == ["a", "b"]
    (call,) = answer["tool_calls"]
    assert (call["helper"], call["capability"], call["arguments"]) == (
        "calc",
        "add",
        {"a": 2, "b": 3},
    )
    assert call["result"] == {"sum": 5} and call["duration_ms"] > 0
    second = upstream.requests[1]["messages"]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "calc__add"
    assert second[-1] == {"role": "tool", "tool_call_id": "call_1", "content": '{"sum":5}'}


def test_a_failing_helper_gives_the_model_a_tool_error(
    stack: Stack, upstream: MockUpstream, helper: HandHelper
) -> None:
    upstream.mode, upstream.tool_arguments = "tools", {"a": 2, "b": 3}
    helper.mode = "error"
    outcome, answer = turn(stack, stream=True)
    assert outcome["type"] == "done"
    assert outcome["content"].startswith("The tool said: Error: calc answered 500: boom")
    assert "boom" in answer["tool_calls"][0]["error"]


def test_a_helper_switched_off_is_not_offered(stack: Stack, upstream: MockUpstream) -> None:
    with running_helper() as hand:
        key = {HELPER_KEY_HEADER: helper_key(stack.settings.installation_secret())}
        manifest = hand.manifest()
    # registered, then gone, and switched off by an admin
    httpx.post(f"{stack.core_url}/v1/helpers", json=manifest, headers=key).raise_for_status()
    headers = {"Authorization": f"Bearer {stack.admin_key}"}
    httpx.patch(
        f"{stack.core_url}/v1/helpers/calc", json={"enabled": False}, headers=headers
    ).raise_for_status()
    upstream.mode = "tools"
    outcome, answer = turn(stack, stream=True)
    assert outcome["content"] == upstream.reply
    assert "tools" not in upstream.requests[0] and answer["tool_calls"] == []
