"""The seed's own use case: the `llm` CLI talks to patchbay, and `llm logs` reads patchbay's log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.stack import Stack
from tests.support.sync_plugin import MODEL_ID, SLOW_WORD_S, SyncWords, sync_plugin
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration

LLM = str(Path(sys.executable).with_name("llm"))


def run_llm(user_dir: Path, *args: str) -> str:
    env = {**os.environ, "LLM_USER_PATH": str(user_dir), "LLM_LOAD_PLUGINS": ""}
    done = subprocess.run([LLM, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def llm_user_dir(tmp_path: Path, stack: Stack) -> Path:
    user_dir = tmp_path / "llm-client"
    user_dir.mkdir()
    (user_dir / "extra-openai-models.yaml").write_text(
        "- model_id: patchbay\n"
        "  model_name: mock-gpt\n"
        f"  api_base: {stack.openai_url}/v1\n"
        "  api_key_name: patchbay\n"
    )
    run_llm(user_dir, "keys", "set", "patchbay", "--value", stack.admin_key)
    return user_dir


def test_llm_cli_chats_through_patchbay(
    stack: Stack, upstream: MockUpstream, llm_user_dir: Path
) -> None:
    assert run_llm(llm_user_dir, "-m", "patchbay", "hello there").strip() == upstream.reply
    assert run_llm(llm_user_dir, "-c", "and again").strip() == upstream.reply
    assert (
        run_llm(llm_user_dir, "-m", "patchbay", "--no-stream", "once more").strip()
        == upstream.reply
    )
    with stack.admin() as core:
        chats = core.get("/v1/chats").json()
        first = core.get(f"/v1/chats/{chats[-1]['id']}/messages").json()
    assert len(chats) == 2  # `llm -c` continued the first chat instead of copying it
    assert [m["content"] for m in first if m["role"] == "user"] == ["hello there", "and again"]


def logged(path: Path, count: int) -> list[dict[str, Any]]:
    """The `llm logs --json` entries of the log database, once `count` of them are written."""
    deadline = time.monotonic() + 10
    while True:
        entries: list[dict[str, Any]] = []
        if path.exists():
            entries = json.loads(
                run_llm(path.parent / "client", "logs", "-d", str(path), "--json", "-n", "0")
            )
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.1)


def test_every_call_is_in_the_llm_logs_database(stack: Stack, upstream: MockUpstream) -> None:
    key = {"Authorization": f"Bearer {stack.admin_key}"}
    for text in ("first question", "second question"):
        body = {"model": "mock-gpt", "messages": [{"role": "user", "content": text}]}
        httpx.post(
            f"{stack.openai_url}/v1/chat/completions", json=body, headers=key
        ).raise_for_status()
    log = stack.settings.llm_log_path
    (log.parent / "client").mkdir(exist_ok=True)
    entries = logged(log, 2)
    assert sorted(e["prompt"] for e in entries) == ["first question", "second question"]
    for entry in entries:
        assert entry["model"] == "mock-gpt"
        assert entry["response"] == upstream.reply
        assert (entry["input_tokens"], entry["output_tokens"]) == (7, 5)
        assert entry["duration_ms"] >= 0
    text = run_llm(log.parent / "client", "logs", "-d", str(log), "-u")
    assert "first question" in text and "Token usage" in text


@pytest.fixture
def sync_model(stack: Stack) -> Iterator[str]:
    """A plugin's model that has no async variant, in the catalog as `sync-words`."""
    with sync_plugin(), stack.admin() as core:
        core.post("/v1/providers", json={"name": "plugins", "kind": "llm"})  # there already, or now
        model = {"name": "sync-words", "provider": "plugins", "upstream_model": MODEL_ID}
        core.post("/v1/models", json=model).raise_for_status()
        yield "sync-words"


def test_cancelling_a_job_stops_a_plugin_model_with_no_async_variant(
    stack: Stack, sync_model: str
) -> None:
    words = 100  # ten seconds of answer, a word every SLOW_WORD_S
    text = "slowly " + " ".join(["word"] * (words - 3))
    SyncWords.ended.clear()
    with stack.admin() as core:
        turn = core.post("/v1/turns", json={"text": text, "model": sync_model}).json()
        deadline = time.monotonic() + 10
        while core.get(f"/v1/jobs/{turn['job_id']}").json()["status"] != "running":
            assert time.monotonic() < deadline, "the job never ran"
            time.sleep(0.05)
        cancelled = core.delete(f"/v1/jobs/{turn['job_id']}").json()
        # The model's call ends at its next word, not after the rest of its answer.
        assert SyncWords.ended.wait(timeout=words * SLOW_WORD_S / 4)
    assert cancelled["status"] == "cancelled"
    assert SyncWords.sent < words / 2


def test_a_plugin_model_with_no_async_variant_answers_and_is_logged(
    stack: Stack, sync_model: str
) -> None:
    client = openai.OpenAI(base_url=stack.openai_url + "/v1", api_key=stack.admin_key)
    with client:
        whole = client.chat.completions.create(
            model=sync_model, messages=[{"role": "user", "content": "hello there"}]
        )
        streamed = client.chat.completions.create(
            model=sync_model, messages=[{"role": "user", "content": "one two"}], stream=True
        )
        pieces = [c.choices[0].delta.content for c in streamed if c.choices]
        with pytest.raises(openai.APIStatusError, match="asked to fail") as failed:
            client.chat.completions.create(
                model=sync_model, messages=[{"role": "user", "content": "please fail"}]
            )
    assert whole.choices[0].message.content == "You said: hello there"
    assert whole.usage is not None and (
        whole.usage.prompt_tokens,
        whole.usage.completion_tokens,
    ) == (
        2,
        4,
    )
    assert [p for p in pieces if p] == ["You", " said:", " one", " two"]  # as they came
    assert failed.value.status_code == 502
    log = stack.settings.llm_log_path
    (log.parent / "client").mkdir(exist_ok=True)
    entries = logged(log, 2)
    assert sorted(e["response"] for e in entries) == ["You said: hello there", "You said: one two"]
