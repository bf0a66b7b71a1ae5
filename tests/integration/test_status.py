"""Modules report in with heartbeats; `/v1/status` shows each up, then down once it goes quiet."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from patchbay.api.app import create_app as create_core
from patchbay.channels.openai_compat.app import create_app as create_openai
from tests.conftest import ADMIN_KEY, make_settings
from tests.support.servers import serve_in_thread

pytestmark = pytest.mark.integration


def modules(core_url: str) -> dict[str, dict[str, object]]:
    status = httpx.get(core_url + "/v1/status", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert status.status_code == 200, status.text
    return {m["name"]: m for m in status.json()["modules"]}


def wait_for_state(core_url: str, module: str, state: str, timeout_s: float = 10) -> float:
    started = time.monotonic()
    while modules(core_url).get(module, {}).get("state") != state:
        assert time.monotonic() - started < timeout_s, f"{module} never became {state}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_channel_is_shown_up_then_down(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, status={"heartbeat_interval_s": 0.2, "down_after_s": 0.8})
    with serve_in_thread(create_core(settings), settings.core.port) as core_url:
        assert set(modules(core_url)) == {"core"}
        with serve_in_thread(create_openai(settings), settings.openai.port):
            wait_for_state(core_url, "openai", "up")
            openai = modules(core_url)["openai"]
            assert openai["kind"] == "channel"
            assert openai["url"] == f"http://127.0.0.1:{settings.openai.port}"
        assert wait_for_state(core_url, "openai", "down") < 3
        assert modules(core_url)["core"]["state"] == "up"


def test_heartbeats_need_the_module_token(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    beat = {"module": "intruder", "kind": "channel", "pid": 1, "started_at": "2026-01-01T00:00:00Z"}
    with serve_in_thread(create_core(settings), settings.core.port) as core_url:
        for headers in ({}, {"X-Patchbay-Module-Token": "forged"}):
            refused = httpx.post(core_url + "/v1/status/heartbeat", json=beat, headers=headers)
            assert refused.status_code == 401
        assert "intruder" not in modules(core_url)
        plain = httpx.get(core_url + "/v1/status", headers={"Authorization": "Bearer pb-nobody"})
        assert plain.status_code == 401
