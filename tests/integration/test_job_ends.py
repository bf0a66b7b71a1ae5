"""Every job ends, once, and a turn's place in its chat is what its model is sent: an upstream
answer of a shape nothing foresaw fails its job (it used to stay running); a job cancelled while
queued resumes from the store as the one event it was told as; a turn after an answer without a
prefix hash (failed, or still coming) matches no conversation that starts with it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.stack import Stack, register_models, running_stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration


def chunk(body: object) -> bytes:
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def events(stack: Stack, job_id: str, *, after: int) -> list[tuple[str, str]]:
    """(id, event) of each event after `after`, read to the end of the stream."""
    headers = {"Authorization": f"Bearer {stack.admin_key}", "Last-Event-ID": str(after)}
    url = f"{stack.core_url}/v1/jobs/{job_id}/events"
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        lines = list(response.iter_lines())
    ids = [line.removeprefix("id: ") for line in lines if line.startswith("id: ")]
    kinds = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    return list(zip(ids, kinds, strict=True))


@pytest.mark.parametrize(
    "stream",
    [
        chunk({"choices": ["hi"]}),
        chunk({"choices": [{"delta": "hi"}]}),
        chunk({"choices": [{"delta": {"content": "hi"}}]}) + chunk({"choices": [], "usage": 5}),
    ],
    ids=["a choice that is no object", "a delta that is no object", "usage that is no object"],
)
def test_an_answer_of_a_shape_nothing_foresaw_fails_its_job(
    stack: Stack, upstream: MockUpstream, stream: bytes
) -> None:
    upstream.mode, upstream.raw_stream = "raw", stream + b"data: [DONE]\n\n"
    with stack.admin() as core:
        ended = core.post("/v1/turns?wait=true", json={"text": "hi"}, timeout=10).json()
        messages = core.get(f"/v1/chats/{ended['turn']['chat_id']}/messages").json()
    assert ended["outcome"]["type"] == "failed"
    assert ended["outcome"]["error"]["code"] == "upstream_error"
    assert messages[-1]["status"] == "failed"


def test_usage_that_is_no_number_leaves_the_answer_with_its_tokens_unknown(
    stack: Stack, upstream: MockUpstream
) -> None:
    usage = {"prompt_tokens": "many", "completion_tokens": 1}
    upstream.mode = "raw"
    upstream.raw_stream = (
        chunk({"choices": [{"delta": {"content": "hi"}}]})
        + chunk({"choices": [], "usage": usage})
        + b"data: [DONE]\n\n"
    )
    with stack.admin() as core:
        ended = core.post("/v1/turns?wait=true", json={"text": "hi"}, timeout=10).json()
    assert ended["outcome"]["type"] == "done"
    assert ended["outcome"]["content"] == "hi"
    assert "input_tokens" not in ended["outcome"]["usage"]  # not known


def test_a_job_cancelled_while_queued_resumes_as_the_event_it_was_told_as(
    tmp_path: Path, upstream: MockUpstream
) -> None:
    settings = make_settings(tmp_path, jobs={"concurrency": 1, "event_retention_s": 0})
    upstream.mode, upstream.delay_s = "slow", 3.0
    with running_stack(settings) as stack:
        register_models(stack, upstream.base_url)
        with stack.admin() as core:
            core.post("/v1/turns", json={"text": "first: the only slot"}).raise_for_status()
            waiting = core.post("/v1/turns", json={"text": "second: waits"}).json()
            time.sleep(0.2)
            assert core.delete(f"/v1/jobs/{waiting['job_id']}").json()["status"] == "cancelled"
        # Its events are gone from memory (no retention): what follows comes from the store.
        assert events(stack, waiting["job_id"], after=0) == [("2", "cancelled")]
        assert events(stack, waiting["job_id"], after=2) == []


def openai_chat(stack: Stack, messages: list[dict[str, Any]]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.admin_key}"}
    body = {"model": "mock-gpt", "messages": messages}
    url = f"{stack.openai_url}/v1/chat/completions"
    return httpx.post(url, json=body, headers=headers, timeout=30)


def test_a_turn_after_a_failed_answer_is_matched_with_what_came_before_it(
    stack: Stack, upstream: MockUpstream
) -> None:
    with stack.admin() as core:
        upstream.mode = "error"
        first = core.post("/v1/turns?wait=true", json={"text": "an earlier question"}).json()
        assert first["outcome"]["type"] == "failed"
        upstream.mode = "ok"
        chat_id = first["turn"]["chat_id"]
        second = {"text": "question B", "chat_id": chat_id}
        assert core.post("/v1/turns?wait=true", json=second).json()["outcome"]["type"] == "done"
    # A new conversation that starts with the same exchange: not that chat.
    started = [
        {"role": "user", "content": "question B"},
        {"role": "assistant", "content": upstream.reply},
        {"role": "user", "content": "question C"},
    ]
    assert openai_chat(stack, started).status_code == 200
    sent = [message["content"] for message in upstream.requests[-1]["messages"]]
    assert sent == ["question B", upstream.reply, "question C"]
    assert len(stack.chats()) == 2


def test_an_outcome_resumed_from_the_store_is_the_one_told_live(
    tmp_path: Path, upstream: MockUpstream
) -> None:
    """Its finish reason (a `length` stayed `length`), its error's code and whether to try again."""
    settings = make_settings(tmp_path, jobs={"event_retention_s": 0})
    with running_stack(settings) as stack:
        register_models(stack, upstream.base_url)
        with stack.admin() as core:
            upstream.mode = "raw"
            upstream.raw_stream = (
                chunk({"choices": [{"delta": {"content": "cut sh"}, "finish_reason": "length"}]})
                + b"data: [DONE]\n\n"
            )
            cut = core.post("/v1/turns?wait=true", json={"text": "hi"}).json()
            upstream.mode = "error"
            failed = core.post("/v1/turns?wait=true", json={"text": "hi"}).json()
        stored = {
            name: resumed(stack, ended["turn"]["job_id"])
            for name, ended in (("cut", cut), ("failed", failed))
        }
    assert cut["outcome"]["finish_reason"] == "length"
    assert stored["cut"]["finish_reason"] == "length"
    assert stored["failed"]["error"] == failed["outcome"]["error"]


def resumed(stack: Stack, job_id: str) -> dict[str, Any]:
    """The outcome a listener resuming after `queued` is told."""
    headers = {"Authorization": f"Bearer {stack.admin_key}", "Last-Event-ID": "1"}
    url = f"{stack.core_url}/v1/jobs/{job_id}/events"
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        data = [line for line in response.iter_lines() if line.startswith("data: ")]
    outcome: dict[str, Any] = json.loads(data[-1].removeprefix("data: "))
    return outcome
