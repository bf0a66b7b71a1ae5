"""The core's helper registry, with a helper that speaks the HTTP contract by hand (no SDK)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from patchbay.cli.main import app
from patchbay.schemas.helpers import HELPER_KEY_HEADER
from patchbay.tokens import helper_key
from tests.support.hand_helper import HandHelper, running_helper
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def helper() -> Iterator[HandHelper]:
    with running_helper() as hand:
        yield hand


def key(stack: Stack) -> dict[str, str]:
    return {HELPER_KEY_HEADER: helper_key(stack.settings.installation_secret())}


def auth(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.admin_key}"}


def register(stack: Stack, manifest: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{stack.core_url}/v1/helpers", json=manifest, headers=key(stack))


def test_register_list_call_and_convert(stack: Stack, helper: HandHelper) -> None:
    assert register(stack, helper.manifest()).status_code == 201
    listed = httpx.get(f"{stack.core_url}/v1/helpers", headers=auth(stack)).json()
    assert [(h["name"], h["state"], len(h["capabilities"])) for h in listed] == [("calc", "up", 2)]
    call = f"{stack.core_url}/v1/helpers/calc/capabilities/add"
    assert httpx.post(call, json={"a": 2, "b": 3}, headers=auth(stack)).json() == {"sum": 5}
    bad = httpx.post(call, json={"a": "two"}, headers=auth(stack))
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_request")
    converted = httpx.post(
        f"{stack.core_url}/v1/convert",
        content=b"plain words",
        headers={**auth(stack), "Content-Type": "text/plain; charset=utf-8"},
    )
    assert converted.json()["text"] == "plain words"
    unknown = httpx.post(
        f"{stack.core_url}/v1/convert",
        content=b"\x00\x01",
        headers={**auth(stack), "Content-Type": "application/x-nothing"},
    )
    assert unknown.status_code == 400 and "application/x-nothing" in unknown.text
    stats = httpx.get(f"{stack.core_url}/v1/helpers/calc", headers=auth(stack)).json()["stats"]
    assert stats["calls"] == 2 and stats["errors"] == 0 and stats["mean_latency_ms"] > 0


def test_helpers_that_misbehave_give_clear_errors(stack: Stack, helper: HandHelper) -> None:
    register(stack, helper.manifest()).raise_for_status()
    call = f"{stack.core_url}/v1/helpers/calc/capabilities/add"
    helper.mode = "lies"
    lied = httpx.post(call, json={"a": 1, "b": 1}, headers=auth(stack))
    assert (lied.status_code, lied.json()["error"]["code"]) == (502, "helper_failed")
    assert "schema" in lied.json()["error"]["message"]
    helper.mode, helper.calls[:] = "error", []
    failed = httpx.post(call, json={"a": 1, "b": 1}, headers=auth(stack))
    assert failed.status_code == 502 and "boom" in failed.json()["error"]["message"]
    assert len(helper.calls) == 3  # idempotent: tried again twice
    helper.mode = "slow"
    slow = httpx.post(call, json={"a": 1, "b": 1}, headers=auth(stack), timeout=30)
    assert slow.status_code == 502 and "did not answer" in slow.json()["error"]["message"]
    # five failures in a row opened the breaker: no call reaches the helper until it resets
    helper.mode, helper.calls[:] = "ok", []
    refused = httpx.post(call, json={"a": 1, "b": 1}, headers=auth(stack))
    assert refused.status_code == 502 and helper.calls == []


def test_registration_needs_the_key_and_a_valid_manifest(stack: Stack, helper: HandHelper) -> None:
    wrong = httpx.post(
        f"{stack.core_url}/v1/helpers", json=helper.manifest(), headers={HELPER_KEY_HEADER: "x"}
    )
    assert wrong.status_code == 401
    twice = helper.manifest()
    twice["capabilities"].append(twice["capabilities"][0])
    assert "named twice" in register(stack, twice).json()["error"]["message"]
    bad_schema = helper.manifest()
    bad_schema["capabilities"][0]["input_schema"] = {"type": "nonsense"}
    assert register(stack, bad_schema).status_code == 400
    elsewhere = helper.manifest()
    elsewhere["base_url"] = "http://10.1.2.3:80"
    assert register(stack, elsewhere).status_code == 403
    assert httpx.get(f"{stack.core_url}/v1/helpers", headers=auth(stack)).json() == []


def test_heartbeat_deregistration_and_admin_controls(stack: Stack, helper: HandHelper) -> None:
    beat = f"{stack.core_url}/v1/helpers/calc/heartbeat"
    assert httpx.post(beat, headers=key(stack)).status_code == 404  # not registered: register
    register(stack, helper.manifest()).raise_for_status()
    assert httpx.post(beat, headers=key(stack)).status_code == 204
    plain = stack.new_user("plain")
    as_plain = {"Authorization": f"Bearer {plain}"}
    patch = f"{stack.core_url}/v1/helpers/calc"
    assert httpx.patch(patch, json={"enabled": False}, headers=as_plain).status_code == 403
    httpx.patch(patch, json={"allowed_roles": ["admin"]}, headers=auth(stack)).raise_for_status()
    call = f"{stack.core_url}/v1/helpers/calc/capabilities/add"
    assert httpx.post(call, json={"a": 1, "b": 2}, headers=as_plain).status_code == 502
    assert httpx.post(call, json={"a": 1, "b": 2}, headers=auth(stack)).json() == {"sum": 3}
    httpx.patch(patch, json={"enabled": False}, headers=auth(stack)).raise_for_status()
    assert httpx.post(call, json={"a": 1, "b": 2}, headers=auth(stack)).status_code == 502
    assert httpx.delete(patch, headers=key(stack)).status_code == 204
    assert httpx.get(patch, headers=auth(stack)).status_code == 404


def test_the_helpers_command(stack: Stack, helper: HandHelper) -> None:
    register(stack, helper.manifest()).raise_for_status()
    env = {
        "PATCHBAY_CORE__URL": stack.core_url,
        "PATCHBAY_API_KEY": stack.admin_key,
        "COLUMNS": "200",
    }

    def cli(*args: str) -> str:
        result = CliRunner().invoke(app, ["helpers", *args], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    listed = cli("list")
    assert "calc" in listed and "add (tool)" in listed and "up" in listed
    cli("disable", "calc")
    assert (
        httpx.get(f"{stack.core_url}/v1/helpers/calc", headers=auth(stack)).json()["enabled"]
        is False
    )
    cli("enable", "calc")
    cli("allow", "calc", "--role", "admin")
    assert httpx.get(f"{stack.core_url}/v1/helpers/calc", headers=auth(stack)).json()[
        "allowed_roles"
    ] == ["admin"]
    cli("remove", "calc")
    assert httpx.get(f"{stack.core_url}/v1/helpers", headers=auth(stack)).json() == []
