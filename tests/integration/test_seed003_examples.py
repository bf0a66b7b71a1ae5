"""Seed 003's six example scripts, run as they are against a core, the consumer and a stand-in vLLM.

The scripts take everything from the environment (`PATCHBAY_API_KEY`, `PATCHBAY_RABBITMQ_URL`,
`PATCHBAY_INSTRUCTIONS__QUEUE`), on a fresh database, with the consumer run as
`patchbay channel instructions`; the seed's model endpoint is `http://localhost:12500/v1`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from patchbay.api.app import create_app as create_core
from tests.conftest import ADMIN_KEY, make_settings
from tests.support.databases import require_service
from tests.support.rabbitmq import (
    RABBITMQ_URL,
    delete_queues,
    require_rabbitmq,
    unique_queue_name,
)
from tests.support.servers import serve_in_thread
from tests.support.up import PATCHBAY, stop
from tests.support.upstream import MockUpstream

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = Path(__file__).parents[2] / "examples" / "seed003"
VLLM_PORT = 12500  # the seed's `http://localhost:12500/v1/chat/completions`
FIRST_ANSWER = "The Los Angeles Dodgers won the 2020 World Series."
SECOND_ANSWER = "It was the Los Angeles Dodgers, against the Tampa Bay Rays."


@pytest.fixture
def vllm() -> Iterator[MockUpstream]:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(("127.0.0.1", VLLM_PORT))
        except OSError as exc:
            require_service(f"a free port {VLLM_PORT} for the stand-in vLLM", exc)
    mock = MockUpstream()
    with serve_in_thread(mock, VLLM_PORT):
        yield mock


@pytest.fixture
def env(tmp_path: Path, queue: str) -> Iterator[dict[str, str]]:
    """A fresh core in a thread and `patchbay channel instructions` as a process."""
    settings = make_settings(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATCHBAY_")}
    env.update(
        PATCHBAY_API_KEY=ADMIN_KEY,
        PATCHBAY_RABBITMQ_URL=RABBITMQ_URL,
        PATCHBAY_INSTRUCTIONS__QUEUE=queue,
    )
    consumer_env = dict(
        env,
        PATCHBAY_DATA_DIR=str(settings.data_dir),
        PATCHBAY_SECRET_KEY="test-secret",
        PATCHBAY_CORE__PORT=str(settings.core.port),
    )
    log = tmp_path / "consumer.log"
    with (
        serve_in_thread(create_core(settings), settings.core.port),
        log.open("w") as output,
    ):
        consumer = subprocess.Popen(
            [PATCHBAY, "channel", "instructions"],
            env=consumer_env,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            _wait_for(log, "consuming instructions from", consumer)
            yield env
        finally:
            stop(consumer)
            assert consumer.returncode == 0, log.read_text()


@pytest.fixture
def queue() -> Iterator[str]:
    require_rabbitmq()
    name = unique_queue_name()
    try:
        yield name
    finally:
        delete_queues(name)


def _wait_for(log: Path, text: str, process: subprocess.Popen[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        assert process.poll() is None, f"the consumer exited: {log.read_text()}"
        assert time.monotonic() < deadline, f"no {text!r} within {timeout_s}s: {log.read_text()}"
        time.sleep(0.05)


def run_example(name: str, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    prefix = " [x] Received "
    assert done.stdout.startswith(prefix), done.stdout
    answer = json.loads(done.stdout[len(prefix) :])
    assert answer["status"] == "success", answer
    assert isinstance(answer, dict)
    return answer


@pytest.mark.timeout(120)
def test_the_seed_examples_run_in_order(
    env: dict[str, str], vllm: MockUpstream, tmp_path: Path
) -> None:
    user = run_example("1_create_user.py", env, tmp_path)
    assert user["type"] == "USER_CREATE"
    assert (user["data"]["user"]["name"], user["data"]["user"]["number"]) == ("john_doe", 2)

    chat = run_example("2_create_chat.py", env, tmp_path)
    assert (chat["data"]["chat"]["title"], chat["data"]["chat"]["number"]) == ("Sample Chat", 1)

    provider = run_example("3_add_llm_provider.py", env, tmp_path)
    assert provider["data"]["provider"]["name"] == "vLLM"

    llm = run_example("4_add_llm.py", env, tmp_path)
    assert llm["type"] == "LLM_ADD"

    vllm.reply = FIRST_ANSWER
    generated = run_example("5_generate_llm_response.py", env, tmp_path)
    assert generated["data"]["llm_response"] == FIRST_ANSWER
    question = generated["data"]["user_message"]
    assert (question["number"], question["content"]) == (1, "Who won the world series in 2020?")
    assert generated["data"]["assistant_message"]["number"] == 2

    vllm.reply = SECOND_ANSWER
    regenerated = run_example("6_regenerate_llm_response.py", env, tmp_path)
    assert regenerated["type"] == "LLM_RESPONSE_REGENERATE"
    assert regenerated["data"]["llm_response"] == SECOND_ANSWER

    (first, second) = vllm.requests
    assert first["model"] == second["model"] == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert first["messages"][-1] == {"role": "user", "content": "Who won the world series in 2020?"}
