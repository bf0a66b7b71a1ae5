"""Cancelling jobs: DELETE /v1/jobs/{id} while running or queued, and an OpenAI client that leaves."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import make_settings
from tests.support.stack import Stack, register_models, running_stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration


def auth(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.admin_key}"}


def wait_for_status(
    stack: Stack, job_id: str, status: str, timeout_s: float = 5
) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = httpx.get(f"{stack.core_url}/v1/jobs/{job_id}", headers=auth(stack)).json()
        if job["status"] == status or time.monotonic() > deadline:
            return dict(job)
        time.sleep(0.05)


def test_cancel_a_running_job_keeps_its_partial_answer(
    stack: Stack, upstream: MockUpstream
) -> None:
    upstream.mode, upstream.delay_s = "drip", 1.0  # five words: five seconds
    headers = {**auth(stack), "Accept": "text/event-stream"}
    with httpx.stream(
        "POST", f"{stack.core_url}/v1/turns", json={"text": "hi"}, headers=headers
    ) as r:
        job_id = r.headers["x-patchbay-job-id"]
        lines = r.iter_lines()
        for line in lines:
            if line == "event: running":
                break
        started = time.monotonic()
        cancelled = httpx.delete(f"{stack.core_url}/v1/jobs/{job_id}", headers=auth(stack))
        rest = list(lines)
    assert time.monotonic() - started < 2 * upstream.delay_s  # not when the model ends
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    outcome = json.loads(next(line for line in reversed(rest) if line.startswith("data:"))[5:])
    assert outcome["type"] == "cancelled"
    assert outcome["content"] and outcome["content"] != upstream.reply
    chat = httpx.get(f"{stack.core_url}/v1/chats", headers=auth(stack)).json()[0]
    messages = httpx.get(f"{stack.core_url}/v1/chats/{chat['id']}/messages", headers=auth(stack))
    answer = messages.json()[-1]
    assert (answer["status"], answer["content"]) == ("cancelled", outcome["content"])
    again = httpx.delete(f"{stack.core_url}/v1/jobs/{job_id}", headers=auth(stack))
    assert again.json()["status"] == "cancelled"  # cancelling an ended job changes nothing


def test_cancel_a_queued_job(tmp_path: Path, upstream: MockUpstream) -> None:
    upstream.mode, upstream.delay_s = "drip", 0.3
    settings = make_settings(tmp_path, jobs={"concurrency": 1})
    with running_stack(settings) as stack:
        register_models(stack, upstream.base_url)
        first = httpx.post(f"{stack.core_url}/v1/turns", json={"text": "a"}, headers=auth(stack))
        second = httpx.post(f"{stack.core_url}/v1/turns", json={"text": "b"}, headers=auth(stack))
        queued_id = second.json()["job_id"]
        assert wait_for_status(stack, queued_id, "queued")["status"] == "queued"
        cancelled = httpx.delete(f"{stack.core_url}/v1/jobs/{queued_id}", headers=auth(stack))
        assert cancelled.json()["status"] == "cancelled"
        done = wait_for_status(stack, first.json()["job_id"], "done")
        assert done["status"] == "done"
        assert len(upstream.requests) == 1  # the cancelled job never reached the model


def test_only_the_owner_can_cancel(stack: Stack) -> None:
    job_id = httpx.post(
        f"{stack.core_url}/v1/turns?wait=true", json={"text": "hi"}, headers=auth(stack)
    ).json()["turn"]["job_id"]
    stranger = stack.new_user("stranger")
    response = httpx.delete(
        f"{stack.core_url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {stranger}"}
    )
    assert (response.status_code, response.json()["error"]["code"]) == (404, "job_not_found")
    assert wait_for_status(stack, job_id, "done")["status"] == "done"


def test_an_openai_client_that_leaves_cancels_the_generation(
    stack: Stack, upstream: MockUpstream
) -> None:
    upstream.mode, upstream.delay_s = "drip", 0.5
    client = openai.OpenAI(base_url=stack.openai_url + "/v1", api_key=stack.admin_key)
    with client:
        stream = client.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        first = next(iter(stream))
        stream.close()
    job_id = first.id.removeprefix("chatcmpl-")
    job = wait_for_status(stack, job_id, "cancelled", timeout_s=1.5)  # the answer takes 2.5 s
    assert job["status"] == "cancelled"


def test_an_openai_client_that_leaves_before_the_first_token_cancels_the_generation(
    stack: Stack, upstream: MockUpstream
) -> None:
    upstream.mode, upstream.delay_s = "slow", 3.0  # the first token after 3 s: a long prompt
    client = openai.OpenAI(
        base_url=stack.openai_url + "/v1", api_key=stack.admin_key, max_retries=0, timeout=0.5
    )
    with client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    (chat,) = stack.chats()
    with stack.admin() as admin:
        deadline = time.monotonic() + 1.5
        while True:
            answer = admin.get(f"/v1/chats/{chat['id']}/messages").json()[-1]
            if answer["status"] == "cancelled" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert answer["status"] == "cancelled"
