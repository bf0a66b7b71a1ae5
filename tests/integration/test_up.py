"""`patchbay up` the way a user runs it: real processes, the real embedded model, the CLI."""

from __future__ import annotations

import http.server
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY
from tests.support.up import PATCHBAY, patchbay_up, up_env

pytestmark = pytest.mark.integration

KEY_PATTERN = re.compile(r"pb-[A-Za-z0-9_-]{40,}")


def port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


def test_first_start_prints_the_admin_key_once(tmp_path: Path) -> None:
    env = up_env(tmp_path, PATCHBAY_LOCAL_MODEL__ENABLED="false")
    with patchbay_up(env) as up:
        first = "".join(up.output)
    assert "patchbay is up" in first
    keys = KEY_PATTERN.findall(first)
    assert len(keys) == 1
    with patchbay_up(env) as up:
        again = "".join(up.output)
        me = up.cli("users", "list", key=keys[0])
    assert "patchbay is up" in again
    assert not KEY_PATTERN.findall(again)
    assert me.returncode == 0 and "admin" in me.stdout
    assert keys[0] not in (tmp_path / "patchbay.db").read_bytes().decode("latin-1")


def test_stop_leaves_no_module_running(tmp_path: Path) -> None:
    env = up_env(tmp_path, PATCHBAY_LOCAL_MODEL__ENABLED="false", PATCHBAY_ADMIN_KEY=ADMIN_KEY)
    with patchbay_up(env) as up:
        assert port_open(up.core_url) and port_open(up.openai_url)
    assert up.process.returncode == 0
    assert not port_open(up.core_url) and not port_open(up.openai_url)


def test_a_disabled_channel_is_not_started_and_leaves_its_port_alone(tmp_path: Path) -> None:
    env = up_env(
        tmp_path,
        PATCHBAY_LOCAL_MODEL__ENABLED="false",
        PATCHBAY_ADMIN_KEY=ADMIN_KEY,
        PATCHBAY_WS__ENABLED="false",
        PATCHBAY_WEB__ENABLED="false",
    )
    with socket.socket() as taken:  # in use by something else: it would fail `up` if it ran
        taken.bind(("127.0.0.1", int(env["PATCHBAY_WS__PORT"])))
        taken.listen()
        with patchbay_up(env) as up:
            assert port_open(up.core_url) and port_open(up.openai_url)
            assert not port_open(f"http://127.0.0.1:{env['PATCHBAY_WEB__PORT']}")
            output = "".join(up.output)
            assert re.search(r"core\s+│\s+up\s+│", output)  # it answers: not "STARTING"
            assert re.search(r"openai\s+│\s+up\s+│", output)
            assert "OpenAI base URL" in output
            assert "WebSocket jobs" not in output and "Web chat" not in output
    assert up.process.returncode == 0


def test_a_module_that_cannot_start_fails_up_with_a_reason(tmp_path: Path) -> None:
    """On a first start: the admin's key, made already, is shown all the same (else it would be
    shown never: the next start finds the admin)."""
    env = up_env(tmp_path, PATCHBAY_LOCAL_MODEL__ENABLED="false")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env["PATCHBAY_OPENAI__PORT"])))
        taken.listen()
        done = subprocess.run([PATCHBAY, "up"], env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 1
    assert "openai did not start" in done.stderr
    assert "address already in use" in done.stderr.lower()
    assert not port_open(f"http://127.0.0.1:{env['PATCHBAY_CORE__PORT']}")
    (key,) = KEY_PATTERN.findall(done.stdout)
    with patchbay_up(env) as up:
        assert "patchbay is up" in "".join(up.output)
        assert up.cli("users", "list", key=key).returncode == 0


def test_a_port_another_program_answers_on_fails_up_before_anything_starts(
    tmp_path: Path,
) -> None:
    """Another installation's channel on the port answers the health check as this one's would:
    `up` must not take it for its own module (whose clients it would serve)."""
    env = up_env(tmp_path, PATCHBAY_LOCAL_MODEL__ENABLED="false", PATCHBAY_ADMIN_KEY=ADMIN_KEY)
    port = int(env["PATCHBAY_OPENAI__PORT"])
    other = http.server.HTTPServer(("127.0.0.1", port), _Healthy)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        done = subprocess.run(
            [PATCHBAY, "up", "-d"], env=env, capture_output=True, text=True, timeout=90
        )
    finally:
        other.shutdown()
        other.server_close()
    if done.returncode == 0:  # it started after all: leave nothing running
        subprocess.run([PATCHBAY, "down"], env=env, capture_output=True, timeout=90)
    assert done.returncode == 1, done.stdout
    said = " ".join(done.stderr.split())
    assert f"openai did not start: 127.0.0.1:{port}: Address already in use" in said
    assert not port_open(f"http://127.0.0.1:{env['PATCHBAY_CORE__PORT']}")
    assert subprocess.run([PATCHBAY, "ps"], env=env, capture_output=True).returncode == 1


def test_ctrl_c_while_the_modules_start_stops_everything_at_once(tmp_path: Path) -> None:
    env = up_env(tmp_path, PATCHBAY_LOCAL_MODEL__ENABLED="false", PATCHBAY_ADMIN_KEY=ADMIN_KEY)
    process = subprocess.Popen(
        [PATCHBAY, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    supervisord = tmp_path / "run" / "supervisord.pid"
    deadline = time.monotonic() + 60
    while not supervisord.exists() and process.poll() is None:  # the modules are starting
        assert time.monotonic() < deadline, "supervisord never started"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert "stopping" in output and "patchbay is up" not in output  # not started first
    assert not supervisord.exists()
    assert not port_open(f"http://127.0.0.1:{env['PATCHBAY_CORE__PORT']}")


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_data_directory_too_deep_for_supervisords_socket_fails_up_in_one_line(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("d" * 100)
    env = up_env(deep, PATCHBAY_LOCAL_MODEL__ENABLED="false", PATCHBAY_ADMIN_KEY=ADMIN_KEY)
    done = subprocess.run(
        [PATCHBAY, "up", "-d"], env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "choose a data directory with a shorter path" in " ".join(done.stderr.split())


@pytest.mark.slow
@pytest.mark.timeout(240)  # the real model on two cores, which other work may be using
def test_embedded_model_answers_offline_and_the_cli_works(tmp_path: Path) -> None:
    env = up_env(tmp_path, PATCHBAY_ADMIN_KEY=ADMIN_KEY)
    with (
        patchbay_up(env) as up,
        openai.OpenAI(base_url=up.openai_url + "/v1", api_key=ADMIN_KEY, max_retries=0) as client,
    ):
        assert [m.id for m in client.models.list()] == ["qwen2.5-coder-0.5b"]
        answer = client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0,
            max_tokens=20,
        )
        assert "Paris" in (answer.choices[0].message.content or "")
        assert answer.usage is not None and answer.usage.completion_tokens > 0
        chat = up.cli("chat", "Reply with the single word: yes", key=ADMIN_KEY)
        assert chat.returncode == 0, chat.stderr
        assert "qwen2.5-coder-0.5b" in chat.stdout
        created = up.cli("users", "create", "carol", key=ADMIN_KEY)
        carol_key = KEY_PATTERN.findall(created.stdout)
        assert created.returncode == 0 and len(carol_key) == 1
        models = up.cli("models", "list", key=carol_key[0])
        assert "qwen2.5-coder-0.5b" in models.stdout
        forbidden = up.cli("users", "create", "dave", key=carol_key[0])
        assert forbidden.returncode == 1 and "permission_denied" in forbidden.stderr
        no_key = up.cli("models", "list")
        assert no_key.returncode == 2 and "PATCHBAY_API_KEY" in no_key.stderr
        gguf = tmp_path / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
        added = up.cli("models", "add-gguf", str(gguf), "--name", "qwen-by-path", key=ADMIN_KEY)
        assert added.returncode == 0, added.stderr
        by_path = client.chat.completions.create(
            model="qwen-by-path",
            messages=[{"role": "user", "content": "What is 2 + 2? Answer with a number."}],
            temperature=0,
            max_tokens=10,
        )
        assert "4" in (by_path.choices[0].message.content or "")


@pytest.mark.timeout(180)
def test_the_built_in_helpers_run_and_register(tmp_path: Path) -> None:
    env = up_env(
        tmp_path,
        PATCHBAY_LOCAL_MODEL__ENABLED="false",
        PATCHBAY_ADMIN_KEY=ADMIN_KEY,
        PATCHBAY_HELPERS__BUILTIN='["documents", "ocr"]',
    )
    with patchbay_up(env) as up:
        assert "helper-documents" in "".join(up.output)
        deadline = time.monotonic() + 60
        while True:
            listed = httpx.get(
                up.core_url + "/v1/helpers", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
            ).json()
            if {(h["name"], h["state"]) for h in listed} >= {("documents", "up"), ("ocr", "up")}:
                break
            assert time.monotonic() < deadline, listed
            time.sleep(0.5)
        converted = httpx.post(
            up.core_url + "/v1/convert",
            content=b"a,b\n1,2\n",
            headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "text/csv"},
            timeout=60,
        )
        assert converted.status_code == 200, converted.text
        assert "| a | b |" in converted.json()["text"]
