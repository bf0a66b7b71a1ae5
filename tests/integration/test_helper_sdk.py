"""A helper written with the SDK, served for real: called over HTTP, registered with a real core,
kept registered across a core that forgets it or restarts, deregistered when it stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from patchbay.api.app import create_app as create_core
from patchbay.helpers.runner import Serving, build_app
from patchbay.tokens import helper_key
from tests.conftest import free_port, make_settings
from tests.support.servers import serve_in_thread
from tests.support.stack import Stack
from tests.support.weather import helper as weather

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], bool], *, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout_s}s")
        time.sleep(0.05)


def listed(core_url: str, admin_key: str) -> dict[str, str]:
    """Each helper the core lists, with its state."""
    response = httpx.get(f"{core_url}/v1/helpers", headers={"Authorization": f"Bearer {admin_key}"})
    response.raise_for_status()
    return {h["name"]: h["state"] for h in response.json()}


@contextmanager
def serving_weather(core_url: str | None, secret: str, port: int | None = None) -> Iterator[str]:
    port = port or free_port()
    serving = Serving(
        port=port, core_url=core_url, key=helper_key(secret) if core_url else None, heartbeat_s=0.2
    )
    with serve_in_thread(build_app(weather, serving), port) as url:
        yield url


def test_a_few_lines_make_a_helper_that_answers_over_http() -> None:
    with serving_weather(None, "") as url:
        manifest = httpx.get(f"{url}/manifest").json()
        assert manifest["base_url"] == url
        assert [c["name"] for c in manifest["capabilities"]] == ["forecast", "broken"]
        ok = httpx.post(f"{url}/capabilities/forecast", json={"town": "Oslo"})
        assert ok.json() == {"town": "Oslo", "celsius": 14.0}
        bad = httpx.post(f"{url}/capabilities/forecast", json={"city": "Oslo"})
        assert bad.status_code == 400
        assert "town: Field required" in bad.json()["error"]["message"]
        broken = httpx.post(f"{url}/capabilities/broken", json={"town": "Oslo"})
        assert broken.status_code == 500
        assert broken.json()["error"]["code"] == "invalid_output"
        assert "celsius: Input should be a valid number" in broken.json()["error"]["message"]
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}


def test_registers_is_called_through_the_core_and_deregisters(stack: Stack) -> None:
    admin = {"Authorization": f"Bearer {stack.admin_key}"}
    secret = stack.settings.installation_secret()
    with serving_weather(stack.core_url, secret):
        wait_for(lambda: listed(stack.core_url, stack.admin_key) == {"weather": "up"})
        call = f"{stack.core_url}/v1/helpers/weather/capabilities/forecast"
        assert httpx.post(call, json={"town": "Rome"}, headers=admin).json() == {
            "town": "Rome",
            "celsius": 14.0,
        }
        broken = httpx.post(
            f"{stack.core_url}/v1/helpers/weather/capabilities/broken",
            json={"town": "Rome"},
            headers=admin,
        )
        assert (broken.status_code, broken.json()["error"]["code"]) == (502, "helper_failed")

        # An admin removes it: its next heartbeat gets 404, and it registers again.
        removed = httpx.delete(f"{stack.core_url}/v1/helpers/weather", headers=admin)
        assert removed.status_code == 204
        wait_for(lambda: "weather" in listed(stack.core_url, stack.admin_key), timeout_s=5)
    assert listed(stack.core_url, stack.admin_key) == {}  # deregistered on shutdown


def test_registers_again_with_a_core_that_restarted_with_another_database(
    tmp_path: Path,
) -> None:
    port = free_port()
    first = make_settings(tmp_path / "first", core={"port": port})
    second = make_settings(tmp_path / "second", core={"port": port})
    assert first.admin_key is not None
    admin_key = first.admin_key.get_secret_value()
    secret = first.installation_secret()
    assert second.installation_secret() == secret  # one installation, new database

    with ExitStack() as helper_running:
        with serve_in_thread(create_core(first), port) as core_url:
            helper_running.enter_context(serving_weather(core_url, secret))
            wait_for(lambda: listed(core_url, admin_key) == {"weather": "up"})
        time.sleep(0.5)  # heartbeats fail while no core answers
        with serve_in_thread(create_core(second), port):
            wait_for(lambda: listed(core_url, admin_key) == {"weather": "up"}, timeout_s=5)


def test_patchbay_helper_run_serves_registers_and_leaves_on_sigterm(stack: Stack) -> None:
    port = free_port()
    key = helper_key(stack.settings.installation_secret())
    command = [sys.executable, "-m", "patchbay.cli.helpers", "run", "tests.support.weather:helper"]
    command += ["--port", str(port), "--core", stack.core_url, "--key", key]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "PATCHBAY_DATA_DIR": str(stack.settings.data_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: listed(stack.core_url, stack.admin_key) == {"weather": "up"}, timeout_s=20)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/capabilities/forecast", json={"town": "Lima"}
        ).json()
        assert answer == {"town": "Lima", "celsius": 14.0}
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises the signal, as a process manager expects
    assert process.returncode in (0, -signal.SIGTERM), output.decode()
    assert b"helper weather deregistered" in output
    assert listed(stack.core_url, stack.admin_key) == {}


def test_a_wrong_key_is_reported_and_the_helper_keeps_serving(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    serving = Serving(port=port, core_url=stack.core_url, key="pbh-wrong", heartbeat_s=0.2)
    app = build_app(weather, serving)
    with serve_in_thread(app, port) as url:
        time.sleep(0.5)
        assert listed(stack.core_url, stack.admin_key) == {}
        assert httpx.get(f"{url}/health").status_code == 200
    assert "the core refused the helper key" in caplog.text
    assert caplog.text.count("is not registered") == 1  # reported once, not at every retry


def test_a_core_that_answers_with_no_json_is_retried_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registered: list[bytes] = []

    async def register(request: Request) -> Response:
        registered.append(await request.body())
        if len(registered) == 1:  # a proxy's page first, then the core again
            return Response(b"<html>maintenance</html>", media_type="text/html")
        return Response(registered[-1], status_code=201, media_type="application/json")

    async def heartbeat(_request: Request) -> Response:
        return Response(status_code=204)

    core = Starlette(
        routes=[
            Route("/v1/helpers", register, methods=["POST"]),
            Route("/v1/helpers/weather/heartbeat", heartbeat, methods=["POST"]),
            Route("/v1/helpers/weather", heartbeat, methods=["DELETE"]),
        ]
    )
    port = free_port()
    with serve_in_thread(core, free_port()) as core_url:
        serving = Serving(port=port, core_url=core_url, key="pbh-key", heartbeat_s=0.1)
        with serve_in_thread(build_app(weather, serving), port):
            wait_for(lambda: len(registered) >= 2, timeout_s=5)
    assert "not JSON" in caplog.text
