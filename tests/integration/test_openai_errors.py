"""Bad input and failing upstreams get OpenAI-shaped errors; nothing is left half-written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from patchbay.channels.openai_compat.app import create_app as create_openai
from tests.conftest import make_settings
from tests.support.servers import serve_in_thread
from tests.support.stack import Stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration

HI = [{"role": "user", "content": "Hi"}]


def post(stack: Stack, body: Any, *, key: str | None = "admin") -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {stack.admin_key if key == 'admin' else key}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        stack.openai_url + "/v1/chat/completions", headers=headers, content=content, timeout=30
    )


def assert_openai_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert error["message"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"model": "mock-gpt", "messages": []}, "invalid_request"),
        ({"model": "mock-gpt"}, "invalid_request"),
        ({"model": "mock-gpt", "messages": "hello"}, "invalid_request"),
        (
            {"model": "mock-gpt", "messages": [{"role": "wizard", "content": "x"}]},
            "invalid_request",
        ),
        ({"model": 7, "messages": HI}, "invalid_request"),
        ({"model": "mock-gpt", "messages": HI, "temperature": "hot"}, "invalid_request"),
        ({"model": "mock-gpt", "messages": HI, "n": 3}, "invalid_request"),
        (
            {"model": "mock-gpt", "messages": [{"role": "assistant", "content": "x"}]},
            "invalid_request",
        ),
        ({"model": "mock-gpt", "messages": [{"role": "tool", "content": "x"}]}, "invalid_request"),
    ],
)
def test_malformed_requests_get_400(stack: Stack, body: Any, code: str) -> None:
    assert_openai_error(post(stack, body), 400, code)


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"tools": [TOOL]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content"),
    ],
)
def test_what_patchbay_cannot_honour_is_refused_not_dropped(
    stack: Stack, extra: dict[str, Any], named: str
) -> None:
    response = post(stack, {"model": "mock-gpt", "messages": HI, **extra})
    assert_openai_error(response, 400, "invalid_request")
    assert response.json()["error"]["message"].startswith(f"{named}: ")
    assert stack.chats() == []


def test_parameters_that_ask_for_nothing_are_taken(stack: Stack, upstream: MockUpstream) -> None:
    nothing = {"tools": [], "tool_choice": "none", "response_format": {"type": "text"}}
    response = post(stack, {"model": "mock-gpt", "messages": HI, "stream": None, **nothing})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == upstream.reply


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("POST", "/v1/completions", 404), ("GET", "/v1/chat/completions", 405)],
)
def test_a_path_or_method_not_served_gets_openais_shape(
    stack: Stack, method: str, path: str, status: int
) -> None:
    headers = {"Authorization": f"Bearer {stack.admin_key}"}
    response = httpx.request(method, stack.openai_url + path, headers=headers, json={})
    assert response.status_code == status
    assert response.json() == {
        "error": {
            "message": f"Invalid URL ({method} {path})",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    with (
        openai.OpenAI(base_url=stack.openai_url + "/v1", api_key=stack.admin_key) as client,
        pytest.raises(openai.NotFoundError, match="Invalid URL"),
    ):
        client.embeddings.create(model="mock-gpt", input="x")


def test_invalid_json_gets_400(stack: Stack) -> None:
    response = post(stack, b"{not json")
    assert_openai_error(response, 400, "invalid_request")
    assert "JSON" in response.json()["error"]["message"]


def test_ten_megabyte_body_gets_413(stack: Stack) -> None:
    huge = {"model": "mock-gpt", "messages": [{"role": "user", "content": "x" * 10_000_000}]}
    assert_openai_error(post(stack, huge), 413, "payload_too_large")


@pytest.mark.parametrize("key", [None, "pb-wrong"])
def test_missing_or_wrong_key_gets_401(stack: Stack, key: str | None) -> None:
    response = post(stack, {"model": "mock-gpt", "messages": HI}, key=key)
    assert_openai_error(response, 401, "invalid_api_key")
    assert response.json()["error"]["type"] == "invalid_request_error"  # as OpenAI says it
    with (
        openai.OpenAI(base_url=stack.openai_url + "/v1", api_key=key or "x", max_retries=0) as c,
        pytest.raises(openai.AuthenticationError),
    ):
        c.models.list()


def test_unknown_model_gets_404(stack: Stack) -> None:
    assert_openai_error(post(stack, {"model": "nope", "messages": HI}), 404, "model_not_found")
    assert_openai_error(
        post(stack, {"model": "nope", "messages": HI, "stream": True}), 404, "model_not_found"
    )


def last_answer(stack: Stack) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {stack.admin_key}"}
    with httpx.Client(base_url=stack.core_url, headers=headers) as core:
        chat = core.get("/v1/chats").json()[0]
        return dict(core.get(f"/v1/chats/{chat['id']}/messages").json()[-1])


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_that_refuses_connections_gets_502(stack: Stack, stream: bool) -> None:
    with stack.admin() as admin:
        admin.post(
            "/v1/providers",
            json={"name": "dead", "kind": "openai", "api_base": "http://127.0.0.1:9/v1"},
        )
        admin.post("/v1/models", json={"name": "dead-model", "provider": "dead"})
    response = post(stack, {"model": "dead-model", "messages": HI, "stream": stream})
    assert_openai_error(response, 502, "upstream_unavailable")
    assert response.headers["retry-after"]
    answer = last_answer(stack)
    assert answer["status"] == "failed"
    assert "cannot reach" in answer["error"]


def test_upstream_500_gets_502(stack: Stack, upstream: MockUpstream) -> None:
    upstream.mode = "error"
    response = post(stack, {"model": "mock-gpt", "messages": HI})
    assert_openai_error(response, 502, "upstream_unavailable")
    assert "upstream exploded" in response.json()["error"]["message"]


def test_upstream_timeout_gets_504(stack: Stack, upstream: MockUpstream) -> None:
    upstream.mode, upstream.delay_s = "slow", 3
    stack.settings.jobs.upstream_timeout_s = 0.5
    response = post(stack, {"model": "mock-gpt", "messages": HI})
    assert_openai_error(response, 504, "upstream_timeout")
    assert last_answer(stack)["status"] == "failed"


@pytest.mark.parametrize("mode", ["garbage", "cut"])
def test_upstream_breaking_off_mid_stream_keeps_partial_answer(
    stack: Stack, upstream: MockUpstream, mode: str
) -> None:
    upstream.mode = mode
    body = {"model": "mock-gpt", "messages": HI, "stream": True}
    headers = {"Authorization": f"Bearer {stack.admin_key}"}
    with httpx.stream(
        "POST", stack.openai_url + "/v1/chat/completions", json=body, headers=headers
    ) as r:
        lines = [line for line in r.iter_lines() if line]
    assert r.status_code == 200  # the first token was already on its way
    assert '"error"' in lines[-2] and "upstream_protocol_error" in lines[-2]
    assert lines[-1] == "data: [DONE]"
    answer = last_answer(stack)
    assert (answer["status"], answer["content"]) == ("failed", "Hello")
    # The server keeps serving.
    upstream.mode = "ok"
    assert post(stack, {"model": "mock-gpt", "messages": HI}).status_code == 200


@pytest.mark.parametrize("mode", ["garbage", "cut"])
def test_upstream_garbage_without_streaming_gets_502(
    stack: Stack, upstream: MockUpstream, mode: str
) -> None:
    upstream.mode = mode
    response = post(stack, {"model": "mock-gpt", "messages": HI})
    assert_openai_error(response, 502, "upstream_protocol_error")
    assert last_answer(stack)["status"] == "failed"


def test_queue_full_gets_429_with_retry_after(stack: Stack) -> None:
    stack.settings.jobs.max_depth = 0
    response = post(stack, {"model": "mock-gpt", "messages": HI})
    assert_openai_error(response, 429, "queue_full")
    assert response.headers["retry-after"]


def test_core_unreachable_gets_503_with_retry_after(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, core={"url": "http://127.0.0.1:9"})
    with serve_in_thread(create_openai(settings), settings.openai.port) as url:
        response = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "mock-gpt", "messages": HI},
            headers={"Authorization": "Bearer pb-any"},
        )
    assert_openai_error(response, 503, "core_unavailable")
    assert response.headers["retry-after"]
