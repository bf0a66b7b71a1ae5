"""Failures with real processes: the core killed mid-request, and restarted mid-job."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_KEY
from tests.support.up import PATCHBAY, up_env
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = up_env(tmp_path, PATCHBAY_LOCAL_MODEL__ENABLED="false", PATCHBAY_ADMIN_KEY=ADMIN_KEY)
    started = subprocess.run(
        [PATCHBAY, "up", "-d"], env=env, capture_output=True, text=True, timeout=90
    )
    assert started.returncode == 0, started.stderr
    try:
        yield env
    finally:
        subprocess.run([PATCHBAY, "down"], env=env, capture_output=True, timeout=60)
        pidfile = tmp_path / "run" / "supervisord.pid"
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pidfile.read_text()), signal.SIGKILL)


def core_pid(tmp_path: Path) -> int:
    for line in (tmp_path / "run" / "logs" / "supervisord.log").read_text().splitlines()[::-1]:
        if "spawned: 'core' with pid" in line:
            return int(line.rsplit(" ", 1)[1])
    raise AssertionError("the core was never spawned")


def healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.timeout(120)
def test_core_killed_mid_request(
    env: dict[str, str], tmp_path: Path, upstream: MockUpstream
) -> None:
    core = f"http://127.0.0.1:{env['PATCHBAY_CORE__PORT']}"
    openai = f"http://127.0.0.1:{env['PATCHBAY_OPENAI__PORT']}"
    with httpx.Client(base_url=core, headers=AUTH) as admin:
        admin.post(
            "/v1/providers", json={"name": "mock", "kind": "openai", "api_base": upstream.base_url}
        ).raise_for_status()
        admin.post(
            "/v1/models", json={"name": "slow", "provider": "mock", "is_default": True}
        ).raise_for_status()
    upstream.mode, upstream.delay_s = "slow", 5.0
    body = {"model": "slow", "messages": [{"role": "user", "content": "take your time"}]}
    answers: list[httpx.Response] = []
    waiting = threading.Thread(
        target=lambda: answers.append(
            httpx.post(openai + "/v1/chat/completions", json=body, headers=AUTH, timeout=60)
        )
    )
    waiting.start()
    with httpx.stream(
        "POST",
        core + "/v1/turns",
        json={"text": "streaming"},
        headers={**AUTH, "Accept": "text/event-stream"},
        timeout=60,
    ) as stream:
        job_id = stream.headers["x-patchbay-job-id"]
        time.sleep(1.5)  # both jobs are now mid-generation
        os.kill(core_pid(tmp_path), signal.SIGKILL)
        with pytest.raises(httpx.HTTPError):
            for _line in stream.iter_lines():
                pass
    waiting.join(30)
    (answer,) = answers
    assert answer.status_code == 503
    assert answer.headers["retry-after"]
    assert answer.json()["error"]["code"] == "core_unavailable"

    deadline = time.monotonic() + 60
    while not healthy(core):
        assert time.monotonic() < deadline, "the supervisor did not bring the core back"
        time.sleep(0.2)
    job = httpx.get(f"{core}/v1/jobs/{job_id}", headers=AUTH).json()
    assert job["status"] == "failed" and "restarted" in job["error"]

    upstream.mode = "ok"
    again = httpx.post(openai + "/v1/chat/completions", json=body, headers=AUTH, timeout=30)
    assert again.status_code == 200, again.text
    assert again.json()["choices"][0]["message"]["content"] == upstream.reply
