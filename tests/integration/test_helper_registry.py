"""The core's helper registry, with a helper that speaks the HTTP contract by hand (no SDK)."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from patchbay.cli.main import app
from patchbay.config import Settings
from patchbay.schemas.helpers import HELPER_KEY_HEADER
from patchbay.tokens import helper_key
from tests.conftest import free_port, make_settings
from tests.support.databases import postgres_database
from tests.support.hand_helper import HandHelper, running_helper
from tests.support.servers import serve_in_thread
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.integration

# A test's requests all come from this machine; the core here sits behind a reverse proxy on
# loopback, so a request with X-Forwarded-For comes from another: ELSEWHERE, no machine's
# (TEST-NET-2). Loopback clients that send none come from loopback, as with no proxy.
BEHIND_A_PROXY = {"trusted_proxies": ["127.0.0.1"]}
ELSEWHERE = "198.51.100.7"
ELSEWHERE_V6 = "2001:db8::7"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, core={"port": free_port(), **BEHIND_A_PROXY})


def from_elsewhere() -> httpx.Client:
    """A client whose requests reach the core from ELSEWHERE, through the proxy."""
    return httpx.Client(headers={"X-Forwarded-For": ELSEWHERE}, timeout=30)


def at_elsewhere(manifest: dict[str, Any]) -> dict[str, Any]:
    """`manifest` of a helper at ELSEWHERE, where it registers from (the core never calls it)."""
    return {**manifest, "base_url": f"http://{ELSEWHERE}:9"}


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


@pytest.mark.parametrize(
    ("base_url", "problem"),
    [
        ("file:///etc/passwd", "http:// or https:// only (its scheme is 'file')"),
        ("ftp://127.0.0.1:21/", "http:// or https:// only (its scheme is 'ftp')"),
        ("gopher://127.0.0.1:70/", "http:// or https:// only (its scheme is 'gopher')"),
        ("//127.0.0.1:8801", "http:// or https:// only (it names no scheme)"),
        ("127.0.0.1:8801", "http:// or https:// only (it names no scheme)"),
        ("http://127.1:8801", "127.1 is the IPv4 address 127.0.0.1 spelled another way"),
        ("http://2130706433:8801", "write it as 127.0.0.1"),
    ],
)
def test_a_base_url_the_core_would_not_call_is_a_400_naming_why(
    stack: Stack, helper: HandHelper, base_url: str, problem: str
) -> None:
    refused = register(stack, {**helper.manifest(), "base_url": base_url})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "invalid_request"
    assert problem in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "seen_as"),
    [
        ({"Forwarded": f"for={ELSEWHERE}"}, f"({ELSEWHERE})"),
        ({"Forwarded": f'for="[{ELSEWHERE_V6}]:4711"'}, f"({ELSEWHERE_V6})"),
        ({"Forwarded": "for=_hidden"}, "(an address not known)"),
        (
            {"Forwarded": f"for={ELSEWHERE}", "X-Forwarded-For": "127.0.0.1"},
            "(an address not known)",
        ),
    ],
)
def test_behind_a_proxy_forwarded_names_the_helpers_host(
    stack: Stack, helper: HandHelper, headers: dict[str, str], seen_as: str
) -> None:
    """A proxy that writes Forwarded (RFC 7239) and not X-Forwarded-For: the helper was taken for
    one on the proxy's host, loopback, and its URL on the core's machine taken."""
    taken = httpx.post(
        f"{stack.core_url}/v1/helpers", json=helper.manifest(), headers={**key(stack), **headers}
    )
    assert (taken.status_code, taken.json()["error"]["code"]) == (403, "permission_denied")
    assert seen_as in taken.json()["error"]["message"]


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
    refused = httpx.post(call, json={"a": 1, "b": 2}, headers=as_plain)
    # the person's limit, not the helper's failure (a 502 is retried by clients)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "permission_denied")
    assert httpx.post(call, json={"a": 1, "b": 2}, headers=auth(stack)).json() == {"sum": 3}
    httpx.patch(patch, json={"enabled": False}, headers=auth(stack)).raise_for_status()
    assert httpx.post(call, json={"a": 1, "b": 2}, headers=auth(stack)).status_code == 502
    assert httpx.delete(patch, headers=key(stack)).status_code == 204
    assert httpx.get(patch, headers=auth(stack)).status_code == 404


def test_behind_a_proxy_a_helper_elsewhere_is_not_of_the_proxys_host(
    stack: Stack, helper: HandHelper
) -> None:
    """Every request through a proxy on loopback has a loopback peer: taken for the client, it
    let any helper elsewhere register a URL on the core's machine (its own ports, whatever
    listens there) and take over its helpers' names."""
    with from_elsewhere() as elsewhere:
        taken = elsewhere.post(
            f"{stack.core_url}/v1/helpers", json=helper.manifest(), headers=key(stack)
        )
        assert (taken.status_code, taken.json()["error"]["code"]) == (403, "permission_denied")
        assert f"({ELSEWHERE})" in taken.json()["error"]["message"]
        register(stack, helper.manifest()).raise_for_status()  # the machine's own, directly
        beat = elsewhere.post(f"{stack.core_url}/v1/helpers/calc/heartbeat", headers=key(stack))
        assert beat.status_code == 409, beat.text


def test_another_host_cannot_take_a_helpers_name(stack: Stack, helper: HandHelper) -> None:
    """Every helper holds the one helper key: it must not let one redirect another host's helper
    (and the people's arguments and files) to itself, keep it shown up, or remove it."""
    register(stack, helper.manifest()).raise_for_status()
    url = f"{stack.core_url}/v1/helpers/calc"
    with from_elsewhere() as elsewhere:
        impostor = at_elsewhere(helper.manifest())
        taken = elsewhere.post(f"{stack.core_url}/v1/helpers", json=impostor, headers=key(stack))
        assert taken.status_code == 409, taken.text  # it was 201, and the calls went to it
        assert taken.json()["error"]["code"] == "conflict"
        assert "patchbay helpers remove calc" in taken.json()["error"]["message"]
        beat = elsewhere.post(f"{url}/heartbeat", headers=key(stack))
        left = elsewhere.delete(url, headers=key(stack))
        for refused in (beat, left):
            assert (refused.status_code, refused.json()["error"]["code"]) == (409, "conflict")
        added = httpx.post(f"{url}/capabilities/add", json={"a": 1, "b": 2}, headers=auth(stack))
        converted = httpx.post(
            f"{stack.core_url}/v1/convert",
            content=b"a letter",
            headers={**auth(stack), "Content-Type": "text/plain"},
        )
        assert (added.json(), converted.json()["text"]) == ({"sum": 3}, "a letter")
        assert helper.calls == ["add", "text"]
        # a name of its own is its own to register, as before
        own = elsewhere.post(
            f"{stack.core_url}/v1/helpers",
            json=at_elsewhere(helper.manifest("other")),
            headers=key(stack),
        )
        assert own.status_code == 201, own.text
    assert httpx.get(url, headers=auth(stack)).json()["base_url"] == helper.url


def test_a_helpers_host_registers_it_again_and_an_admin_frees_its_name(
    stack: Stack, helper: HandHelper
) -> None:
    on_ipv6 = {**helper.manifest(), "base_url": "http://[::1]:9"}  # loopback names are one host
    register(stack, on_ipv6).raise_for_status()
    # the helper restarted on another port of the same host: its name is still its own
    register(stack, helper.manifest()).raise_for_status()
    url = f"{stack.core_url}/v1/helpers/calc"
    added = httpx.post(f"{url}/capabilities/add", json={"a": 1, "b": 2}, headers=auth(stack))
    assert (added.json(), helper.calls) == ({"sum": 3}, ["add"])
    with from_elsewhere() as elsewhere:

        def take() -> httpx.Response:
            manifest = at_elsewhere(helper.manifest())
            return elsewhere.post(f"{stack.core_url}/v1/helpers", json=manifest, headers=key(stack))

        assert take().status_code == 409
        stack.cli("helpers", "remove", "calc")  # what the refusal tells an admin to do
        assert take().status_code == 201
        assert elsewhere.post(f"{url}/heartbeat", headers=key(stack)).status_code == 204
        # the name is now the newcomer's: loopback can no longer remove it, its host can
        assert httpx.delete(url, headers=key(stack)).status_code == 409
        assert elsewhere.delete(url, headers=key(stack)).status_code == 204
    assert httpx.get(url, headers=auth(stack)).status_code == 404


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


def test_a_large_answer_is_read_whole(stack: Stack, helper: HandHelper) -> None:
    register(stack, helper.manifest()).raise_for_status()
    text = b"word " * 160_000  # 800 kB: the answer reaches the core in many chunks
    converted = httpx.post(
        f"{stack.core_url}/v1/convert",
        content=text,
        headers={**auth(stack), "Content-Type": "text/plain"},
        timeout=30,
    )
    assert converted.status_code == 200, converted.text
    assert converted.json()["text"] == text.decode()


def test_the_core_does_not_follow_a_helpers_redirects(stack: Stack) -> None:
    async def secret(_request: Request) -> Response:
        return JSONResponse({"secret": "only for the machine itself"})

    async def peek(_request: Request) -> Response:
        return RedirectResponse(f"{private}/secret", status_code=307)

    inside = Starlette(routes=[Route("/secret", secret, methods=["GET", "POST"])])
    helper = Starlette(routes=[Route("/capabilities/peek", peek, methods=["POST"])])
    with (
        serve_in_thread(inside, free_port()) as private,
        serve_in_thread(helper, free_port()) as url,
    ):
        capabilities = [{"name": "peek", "description": "Peeks."}]
        manifest = {"name": "peek", "base_url": url, "capabilities": capabilities}
        register(stack, manifest).raise_for_status()
        call = f"{stack.core_url}/v1/helpers/peek/capabilities/peek"
        answer = httpx.post(call, json={}, headers=auth(stack))
    assert answer.status_code == 502 and "secret" not in answer.text
    assert "redirect" in answer.json()["error"]["message"]


@contextmanager
def weather_helper(
    stack: Stack, forecast: Callable[[Request], Awaitable[Response]], *, idempotent: bool
) -> Iterator[str]:
    """A helper `weather` whose capability `forecast` answers as `forecast` does, registered;
    the URL to call it through the core."""
    helper = Starlette(routes=[Route("/capabilities/forecast", forecast, methods=["POST"])])
    with serve_in_thread(helper, free_port()) as url:
        capability = {"name": "forecast", "description": "Forecasts.", "idempotent": idempotent}
        manifest = {"name": "weather", "base_url": url, "capabilities": [capability]}
        register(stack, manifest).raise_for_status()
        yield f"{stack.core_url}/v1/helpers/weather/capabilities/forecast"


def test_refusals_do_not_open_the_breaker(stack: Stack) -> None:
    async def forecast(request: Request) -> Response:
        if (await request.json()).get("town") != "Paris":
            return JSONResponse({"error": {"message": "no such town"}}, status_code=404)
        return JSONResponse({"celsius": 20})

    with weather_helper(stack, forecast, idempotent=True) as call:
        for _ in range(stack.settings.helpers.breaker_failures + 1):  # one person's typos…
            refused = httpx.post(call, json={"town": "Atlantis"}, headers=auth(stack))
            assert "no such town" in refused.json()["error"]["message"]
        # …leave the helper usable for everyone
        answer = httpx.post(call, json={"town": "Paris"}, headers=auth(stack))
    assert answer.json() == {"celsius": 20}
    stats = httpx.get(f"{stack.core_url}/v1/helpers/weather", headers=auth(stack)).json()["stats"]
    assert stats["errors"] == stack.settings.helpers.breaker_failures + 1


def test_refusals_between_failures_do_not_hide_them_from_the_breaker(stack: Stack) -> None:
    async def forecast(request: Request) -> Response:
        if (await request.json()).get("town") == "Atlantis":
            return JSONResponse({"error": {"message": "no such town"}}, status_code=404)
        return JSONResponse({"error": {"message": "the weather service is down"}}, 500)

    with weather_helper(stack, forecast, idempotent=False) as call:
        for _ in range(stack.settings.helpers.breaker_failures):  # failing, with typos between
            httpx.post(call, json={"town": "Paris"}, headers=auth(stack))
            httpx.post(call, json={"town": "Atlantis"}, headers=auth(stack))
        shut = httpx.post(call, json={"town": "Paris"}, headers=auth(stack))
    assert "failed too often" in shut.json()["error"]["message"]


def test_a_patch_that_changes_nothing_or_nulls_a_switch(stack: Stack, helper: HandHelper) -> None:
    register(stack, helper.manifest()).raise_for_status()
    patch = f"{stack.core_url}/v1/helpers/calc"
    same = httpx.patch(patch, json={}, headers=auth(stack))
    assert same.status_code == 200 and same.json()["enabled"] is True
    null = httpx.patch(patch, json={"enabled": None}, headers=auth(stack))
    assert (null.status_code, null.json()["error"]["code"]) == (400, "invalid_request")
    assert httpx.get(patch, headers=auth(stack)).json()["enabled"] is True


def test_allow_everyone_lifts_the_limits(stack: Stack, helper: HandHelper) -> None:
    register(stack, helper.manifest()).raise_for_status()
    stack.new_user("bob")
    stack.cli("helpers", "allow", "calc", "--user", "bob")
    stack.cli("helpers", "allow", "calc", "--role", "admin")  # the new limits replace the old
    limits = httpx.get(f"{stack.core_url}/v1/helpers/calc", headers=auth(stack)).json()
    assert (limits["allowed_roles"], limits["allowed_users"]) == (["admin"], None)
    stack.cli("helpers", "allow", "calc", "--everyone")
    limits = httpx.get(f"{stack.core_url}/v1/helpers/calc", headers=auth(stack)).json()
    assert (limits["allowed_roles"], limits["allowed_users"]) == (None, None)
    plain = {"Authorization": f"Bearer {stack.new_user('plain')}"}
    call = f"{stack.core_url}/v1/helpers/calc/capabilities/add"
    assert httpx.post(call, json={"a": 1, "b": 2}, headers=plain).json() == {"sum": 3}


def test_a_schema_whose_ref_leads_nowhere_is_the_helpers_failure(
    stack: Stack, helper: HandHelper
) -> None:
    manifest = copy.deepcopy(helper.manifest())  # its schemas are the module's own dicts
    nowhere = {"$ref": "#/$defs/integer"}  # no $defs: the reference is only followed when used
    manifest["capabilities"][0]["input_schema"]["properties"]["a"] = nowhere
    register(stack, manifest).raise_for_status()
    call = f"{stack.core_url}/v1/helpers/calc/capabilities/add"
    answer = httpx.post(call, json={"a": 1, "b": 2}, headers=auth(stack))
    assert (answer.status_code, answer.json()["error"]["code"]) == (502, "helper_failed")
    assert "$defs/integer" in answer.json()["error"]["message"]


@pytest.fixture
def pg_stack(tmp_path: Path) -> Iterator[Stack]:
    with postgres_database() as url:
        core = {"port": free_port(), **BEHIND_A_PROXY}
        with running_stack(make_settings(tmp_path, database_url=url, core=core)) as s:
            yield s


def test_replicas_registering_one_new_name_at_once_all_succeed(
    pg_stack: Stack, helper: HandHelper
) -> None:
    """Replicas of one helper start together (many machines): none may get a 500."""

    def register_once(name: str) -> int:
        return register(pg_stack, helper.manifest(name)).status_code

    with ThreadPoolExecutor(8) as pool:  # a race: a few rounds, so that one is surely lost
        statuses = [list(pool.map(register_once, [f"twins-{n}"] * 8)) for n in range(5)]
    assert statuses == [[201] * 8] * 5


def test_two_hosts_registering_one_name_at_once_never_both_hold_it(
    pg_stack: Stack, helper: HandHelper
) -> None:
    """The name goes to whichever host registers first; the other's registrations, however
    they interleave with the first's, are refused."""

    def register_once(job: tuple[str, str]) -> tuple[str, int]:
        source, name = job
        manifest = helper.manifest(name)
        client = httpx.Client(timeout=30)
        if source == ELSEWHERE:
            manifest, client = at_elsewhere(manifest), from_elsewhere()
        with client:
            answer = client.post(
                f"{pg_stack.core_url}/v1/helpers", json=manifest, headers=key(pg_stack)
            )
        return manifest["base_url"], answer.status_code

    with ThreadPoolExecutor(8) as pool:  # a race: a few rounds, so that some are close
        for n in range(5):
            name = f"contested-{n}"
            jobs = [("127.0.0.1", name), (ELSEWHERE, name)] * 4
            answers = list(pool.map(register_once, jobs))
            held = httpx.get(
                f"{pg_stack.core_url}/v1/helpers/{name}", headers=auth(pg_stack)
            ).json()["base_url"]
            assert sorted(answers) == sorted(
                (url, 201 if url == held else 409) for url, _ in answers
            ), answers
