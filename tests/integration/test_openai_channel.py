"""The OpenAI channel end to end, with the official `openai` client against real servers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.stack import Stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration


_clients: list[openai.OpenAI] = []


def client(stack: Stack, key: str | None = None) -> openai.OpenAI:
    made = openai.OpenAI(
        base_url=stack.openai_url + "/v1", api_key=key or stack.admin_key, max_retries=0
    )
    _clients.append(made)
    return made


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def chat_messages(stack: Stack, key: str | None = None) -> list[list[tuple[str, str]]]:
    """Every chat of the key's owner, as (role, content) lists, oldest chat first."""
    headers = {"Authorization": f"Bearer {key or stack.admin_key}"}
    with httpx.Client(base_url=stack.core_url, headers=headers) as core:
        chats = core.get("/v1/chats").json()
        return [
            [(m["role"], m["content"]) for m in core.get(f"/v1/chats/{c['id']}/messages").json()]
            for c in reversed(chats)
        ]


def test_non_streaming_completion_has_openai_shape(stack: Stack, upstream: MockUpstream) -> None:
    result = client(stack).chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": "Hi"}],
        temperature=0.2,
        max_tokens=50,
    )
    assert result.object == "chat.completion"
    assert result.id.startswith("chatcmpl-")
    assert result.model == "mock-gpt"
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == upstream.reply
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, 5)
    sent = upstream.requests[-1]
    assert sent["stream"] is False  # nobody waits token by token, so the upstream is not asked to
    assert sent["model"] == "gpt-mock"
    assert (sent["temperature"], sent["max_tokens"]) == (0.2, 50)


def test_streaming_completion_ends_with_usage_and_done(
    stack: Stack, upstream: MockUpstream
) -> None:
    stream = client(stack).chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
        stop=["END"],
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == upstream.reply
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert len({c.id for c in chunks}) == 1
    assert upstream.requests[-1]["stop"] == ["END"]
    assert upstream.requests[-1]["stream"] is True
    assert upstream.requests[-1]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_raw_stream_ends_with_done_marker(stack: Stack) -> None:
    body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    headers = {"Authorization": f"Bearer {stack.admin_key}"}
    with httpx.stream(
        "POST", stack.openai_url + "/v1/chat/completions", json=body, headers=headers
    ) as r:
        lines = [line for line in r.iter_lines() if line]
    assert r.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_models_are_listed(stack: Stack) -> None:
    models = {m.id: m for m in client(stack).models.list()}
    assert set(models) == {"mock-gpt", "echo"}
    assert models["mock-gpt"].owned_by == "mock"
    assert client(stack).models.retrieve("echo").id == "echo"


def test_conversation_is_stored_with_usage_and_timings(stack: Stack) -> None:
    client(stack).chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "Hi"}]
    )
    headers = {"Authorization": f"Bearer {stack.admin_key}"}
    with httpx.Client(base_url=stack.core_url, headers=headers) as core:
        (chat,) = core.get("/v1/chats").json()
        user, answer = core.get(f"/v1/chats/{chat['id']}/messages").json()
    assert (user["role"], user["content"]) == ("user", "Hi")
    assert answer["status"] == "complete"
    assert answer["usage"] == {"input_tokens": 7, "output_tokens": 5}
    assert answer["timings"]["ttft_ms"] > 0
    assert answer["timings"]["duration_ms"] >= answer["timings"]["ttft_ms"]
    assert answer["model"] == "mock-gpt"


def test_history_that_matches_a_stored_chat_continues_it(
    stack: Stack, upstream: MockUpstream
) -> None:
    c = client(stack)
    first: list[Any] = [{"role": "system", "content": "S"}, {"role": "user", "content": "one"}]
    reply = c.chat.completions.create(model="mock-gpt", messages=first)
    second: list[Any] = [*first, {"role": "assistant", "content": reply.choices[0].message.content}]
    c.chat.completions.create(
        model="mock-gpt", messages=[*second, {"role": "user", "content": "two"}]
    )
    (chat,) = chat_messages(stack)
    assert chat == [
        ("system", "S"),
        ("user", "one"),
        ("assistant", upstream.reply),
        ("user", "two"),
        ("assistant", upstream.reply),
    ]
    assert [m["role"] for m in upstream.requests[-1]["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
    ]


def test_history_that_matches_nothing_is_stored_as_a_new_chat(stack: Stack) -> None:
    history: list[Any] = [
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "an answer patchbay never gave"},
        {"role": "user", "content": "now"},
    ]
    client(stack).chat.completions.create(model="mock-gpt", messages=history)
    (chat,) = chat_messages(stack)
    assert [content for _role, content in chat[:3]] == [
        "earlier",
        "an answer patchbay never gave",
        "now",
    ]


def test_users_never_see_each_others_chats(stack: Stack) -> None:
    alice, bob = stack.new_user("alice"), stack.new_user("bob")
    client(stack, alice).chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "alice's secret"}]
    )
    assert chat_messages(stack, bob) == []
    headers = {"Authorization": f"Bearer {alice}"}
    with httpx.Client(base_url=stack.core_url, headers=headers) as core:
        (chat,) = core.get("/v1/chats").json()
    bob_view = httpx.get(
        f"{stack.core_url}/v1/chats/{chat['id']}/messages",
        headers={"Authorization": f"Bearer {bob}"},
    )
    assert bob_view.status_code == 404
    # The same history sent by bob starts bob's own chat instead of continuing alice's.
    client(stack, bob).chat.completions.create(
        model="mock-gpt",
        messages=[
            {"role": "user", "content": "alice's secret"},
            {"role": "assistant", "content": "Hello from the mock upstream."},
            {"role": "user", "content": "more"},
        ],
    )
    assert len(chat_messages(stack, alice)[0]) == 2
    assert len(chat_messages(stack, bob)) == 1
