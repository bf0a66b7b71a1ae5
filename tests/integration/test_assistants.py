"""Assistant templates (seed 002): chained streams, placeholders, history, named assistants."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from patchbay.cli.main import app
from tests.support.stack import Stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration

TWO_STREAMS: dict[str, Any] = {
    "streams": [
        {
            "settings": {"model": "mock-gpt", "temperature": 0.1},
            "messages": [
                {"role": "system", "content": "Draft an answer."},
                {"insert": "history"},
                {"role": "user", "content": "{query}"},
            ],
        },
        {
            "provider": "mock",
            "settings": {"model": "gpt-other"},
            "messages": [
                {"role": "system", "content": "Polish this draft."},
                {"role": "user", "content": "Q: {query}\nDraft: {previous_stream_output}"},
            ],
        },
    ]
}


def auth(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.admin_key}"}


def run(stack: Stack, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{stack.core_url}/v1/turns?wait=true", json=body, headers=auth(stack))


def test_streams_chain_and_fill_placeholders(stack: Stack, upstream: MockUpstream) -> None:
    history = [
        {"role": "user", "content": "Where is the eiffel tower?"},
        {"role": "system", "content": "The Eiffel Tower is located in Paris, France."},
    ]
    query = (
        "How tall is it? {query} {previous_stream_output}"  # braces from people stay as they are
    )
    result = run(stack, {"text": query, "history": history, "assistant": TWO_STREAMS}).json()
    assert result["outcome"]["type"] == "done"
    assert result["outcome"]["content"] == upstream.reply
    first, second = upstream.requests[-2:]
    assert first["model"] == "gpt-mock" and first["temperature"] == 0.1
    assert [m["content"] for m in first["messages"]] == [
        "Draft an answer.",
        history[0]["content"],
        history[1]["content"],
        query,
    ]
    assert second["model"] == "gpt-other"  # the provider's upstream model, not in the catalog
    assert second["messages"][-1]["content"] == f"Q: {query}\nDraft: {upstream.reply}"
    assert result["turn"]["model"] == "mock/gpt-other"


@pytest.mark.parametrize("by", ["answer", "question"])
def test_the_assistant_that_answered_answers_again(
    stack: Stack, upstream: MockUpstream, by: str
) -> None:
    """Regenerating an answer an assistant made runs that assistant again, not its last model;
    asking for a model asks that model alone."""
    first = run(stack, {"text": "Where is it?", "assistant": TWO_STREAMS}).json()
    assert first["outcome"]["type"] == "done"
    sent = [request["messages"] for request in upstream.requests[-2:]]
    turn = first["turn"]
    ref = turn["assistant_message_id"] if by == "answer" else turn["user_message_id"]
    url = f"{stack.core_url}/v1/messages/{ref}/regenerate?wait=true"
    again = httpx.post(url, json={}, headers=auth(stack)).json()
    assert again["outcome"]["type"] == "done"
    assert [request["messages"] for request in upstream.requests[-2:]] == sent
    answers = httpx.get(
        f"{stack.core_url}/v1/chats/{turn['chat_id']}/messages", headers=auth(stack)
    ).json()
    assert answers[-1]["assistant"] == TWO_STREAMS | answers[-1]["assistant"]  # with defaults
    bare = httpx.post(url, json={"model": "mock-gpt"}, headers=auth(stack)).json()
    assert bare["outcome"]["type"] == "done"
    assert [m["content"] for m in upstream.requests[-1]["messages"]] == ["Where is it?"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"streams": []}, "streams"),
        ({"streams": [{"messages": [{"role": "user", "content": "{nope}"}]}]}, "{nope}"),
        (
            {"streams": [{"messages": [{"role": "user", "content": "{previous_stream_output}"}]}]},
            "{previous_stream_output}",
        ),
        ({"streams": [{"messages": [{"insert": "everything"}]}]}, "insert"),
        ({"streams": [{"provider": "missing", "messages": [{"insert": "history"}]}]}, "missing"),
        (
            {"streams": [{"settings": {"model": "nope"}, "messages": [{"insert": "history"}]}]},
            "nope",
        ),
    ],
)
def test_bad_templates_are_refused_before_anything_is_stored(
    stack: Stack, change: dict[str, Any], expected: str
) -> None:
    response = run(stack, {"text": "hi", "assistant": change})
    assert response.status_code in (400, 404), response.text
    assert expected in response.json()["error"]["message"]
    assert httpx.get(f"{stack.core_url}/v1/chats", headers=auth(stack)).json() == []


def test_named_assistants_from_rest_cli_and_the_openai_channel(
    stack: Stack, upstream: MockUpstream, tmp_path: Path
) -> None:
    path = tmp_path / "polish.json"
    path.write_text(json.dumps(TWO_STREAMS))
    env = {"PATCHBAY_CORE__URL": stack.core_url, "PATCHBAY_API_KEY": stack.admin_key}
    added = CliRunner().invoke(app, ["assistants", "add", "polish", str(path)], env=env)
    assert added.exit_code == 0, added.output
    listed = CliRunner().invoke(app, ["assistants", "list"], env=env)
    assert "polish" in listed.output and "gpt-other" in listed.output
    by_name = run(stack, {"text": "hi", "assistant_name": "polish"}).json()
    assert by_name["outcome"]["content"] == upstream.reply
    with httpx.Client(base_url=stack.openai_url, headers=auth(stack)) as client:
        completion = client.post(
            "/v1/chat/completions",
            json={"model": "assistant:polish", "messages": [{"role": "user", "content": "hi"}]},
        ).json()
    assert completion["choices"][0]["message"]["content"] == upstream.reply
    assert upstream.requests[-1]["model"] == "gpt-other"
    missing = run(stack, {"text": "hi", "assistant_name": "nobody"})
    assert missing.json()["error"]["code"] == "assistant_not_found"
    plain = stack.new_user("plain")
    refused = httpx.post(
        f"{stack.core_url}/v1/assistants",
        json={"name": "mine", "template": TWO_STREAMS},
        headers={"Authorization": f"Bearer {plain}"},
    )
    assert refused.status_code == 403
    removed = CliRunner().invoke(app, ["assistants", "remove", "polish"], env=env)
    assert removed.exit_code == 0
