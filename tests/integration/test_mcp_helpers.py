"""An MCP server (built with the official `mcp` SDK, streamable HTTP) registered as a helper."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from patchbay.schemas.helpers import HELPER_KEY_HEADER
from patchbay.tokens import helper_key
from tests.conftest import free_port, make_settings
from tests.support.hand_helper import running_helper
from tests.support.servers import serve_in_thread
from tests.support.stack import Stack, running_stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration


def weather_server() -> MCPServer:
    server = MCPServer("weather")

    @server.tool()
    def forecast(city: str, days: int = 1) -> str:
        """The weather in a city for the next days."""
        return f"{city}: sunny for {days} days"

    @server.tool(name="Broken.Tool")
    def broken() -> str:
        """Always fails."""
        raise ToolError("the sensor is offline")

    return server


@pytest.fixture
def mcp_url() -> Iterator[str]:
    with serve_in_thread(weather_server().streamable_http_app(), free_port()) as url:
        yield url + "/mcp"


def auth(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.admin_key}"}


def add_mcp(stack: Stack, name: str, url: str) -> httpx.Response:
    """An admin adds the MCP server at `url` as helper `name`."""
    return httpx.post(
        f"{stack.core_url}/v1/helpers/mcp",
        json={"name": name, "url": url},
        headers=auth(stack),
        timeout=30,
    )


def test_an_mcp_servers_tools_become_capabilities(
    stack: Stack, upstream: MockUpstream, mcp_url: str
) -> None:
    added = add_mcp(stack, "weather", mcp_url)
    assert added.status_code == 201, added.text
    helper = added.json()
    assert helper["protocol"] == "mcp" and helper["state"] == "up"
    assert [c["name"] for c in helper["capabilities"]] == ["forecast", "broken_tool"]
    assert helper["capabilities"][0]["input_schema"]["required"] == ["city"]
    call = f"{stack.core_url}/v1/helpers/weather/capabilities/forecast"
    answer = httpx.post(call, json={"city": "Paris", "days": 2}, headers=auth(stack), timeout=30)
    assert answer.json() == {"result": "Paris: sunny for 2 days"}
    broken = f"{stack.core_url}/v1/helpers/weather/capabilities/broken_tool"
    failed = httpx.post(broken, json={}, headers=auth(stack), timeout=30)
    assert failed.status_code == 502 and "sensor is offline" in failed.json()["error"]["message"]

    upstream.mode, upstream.tool_arguments = "tools", {"city": "Oslo"}
    result = httpx.post(
        f"{stack.core_url}/v1/turns?wait=true",
        json={"text": "Weather in Oslo?"},
        headers=auth(stack),
        timeout=30,
    ).json()
    assert result["outcome"]["content"] == 'The tool said: {"result":"Oslo: sunny for 1 days"}'


def test_an_mcp_server_that_refuses_is_not_registered(stack: Stack) -> None:
    refused = httpx.post(
        f"{stack.core_url}/v1/helpers/mcp",
        json={"name": "nothing", "url": f"http://127.0.0.1:{free_port()}/mcp"},
        headers=auth(stack),
        timeout=30,
    )
    assert refused.status_code == 502 and "refused" in refused.json()["error"]["message"]
    plain = stack.new_user("plain")
    forbidden = httpx.post(
        f"{stack.core_url}/v1/helpers/mcp",
        json={"name": "x", "url": "http://127.0.0.1:1/mcp"},
        headers={"Authorization": f"Bearer {plain}"},
    )
    assert forbidden.status_code == 403
    assert httpx.get(f"{stack.core_url}/v1/helpers", headers=auth(stack)).json() == []


class Hanging:
    """An ASGI app in front of another that, once told to, holds every HTTP request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.released = threading.Event()
        self.released.set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self.released.is_set():
            await asyncio.to_thread(self.released.wait)
        await self.app(scope, receive, send)


def test_one_mcp_server_that_hangs_leaves_the_others_up(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, status={"heartbeat_interval_s": 0.2, "down_after_s": 1.5})
    stuck = Hanging(weather_server().streamable_http_app())
    with (
        running_stack(settings) as stack,
        serve_in_thread(stuck, free_port()) as stuck_url,
        serve_in_thread(weather_server().streamable_http_app(), free_port()) as fine_url,
    ):
        for name, url in (("aaa-stuck", stuck_url), ("weather", fine_url)):
            added = add_mcp(stack, name, url + "/mcp")
            assert added.status_code == 201, added.text
        stuck.released.clear()
        states = []
        deadline = time.monotonic() + 3 * settings.status.down_after_s
        while time.monotonic() < deadline:
            listed = httpx.get(f"{stack.core_url}/v1/helpers", headers=auth(stack)).json()
            states.append({h["name"]: h["state"] for h in listed})
            time.sleep(0.1)
        stuck.released.set()
    weather_down = [i for i, state in enumerate(states) if state["weather"] != "up"]
    assert not weather_down, f"weather down at looks {weather_down} of {len(states)}"
    assert states[-1]["aaa-stuck"] == "down"


def test_the_token_in_an_mcp_servers_url_is_shown_to_admins_only(stack: Stack) -> None:
    with serve_in_thread(weather_server().streamable_http_app(), free_port()) as url:
        secret_url = f"{url}/mcp?token=s3cret"
        added = add_mcp(stack, "weather", secret_url)
        assert added.status_code == 201, added.text
    plain = {"Authorization": f"Bearer {stack.new_user('plain')}"}
    for path in ("/v1/helpers", "/v1/helpers/weather"):
        assert "s3cret" not in httpx.get(f"{stack.core_url}{path}", headers=plain).text
        assert secret_url in httpx.get(f"{stack.core_url}{path}", headers=auth(stack)).text
    # the server is gone: the error a person (and a model) reads does not carry the token either
    call = f"{stack.core_url}/v1/helpers/weather/capabilities/forecast"
    failed = httpx.post(call, json={"city": "Oslo"}, headers=plain, timeout=30)
    assert failed.status_code == 502, failed.text
    assert "s3cret" not in failed.text


def test_the_helper_key_cannot_take_over_or_remove_an_mcp_server(
    stack: Stack, mcp_url: str
) -> None:
    added = add_mcp(stack, "weather", mcp_url)
    assert added.status_code == 201, added.text
    key = {HELPER_KEY_HEADER: helper_key(stack.settings.installation_secret())}
    with running_helper() as impostor:
        manifest = impostor.manifest(name="weather")
        taken = httpx.post(f"{stack.core_url}/v1/helpers", json=manifest, headers=key)
        assert (taken.status_code, taken.json()["error"]["code"]) == (409, "conflict")
        as_mcp = {**impostor.manifest(name="other"), "protocol": "mcp"}
        assert (
            httpx.post(f"{stack.core_url}/v1/helpers", json=as_mcp, headers=key).status_code == 403
        )
    removed = httpx.delete(f"{stack.core_url}/v1/helpers/weather", headers=key)
    assert removed.status_code == 403
    # nor keep it shown up: it is up when it answers the core's pings
    beat = httpx.post(f"{stack.core_url}/v1/helpers/weather/heartbeat", headers=key)
    assert beat.status_code == 403
    # an admin adding it again replaces it, as before
    again = add_mcp(stack, "weather", mcp_url)
    assert again.status_code == 201, again.text
    helpers = httpx.get(f"{stack.core_url}/v1/helpers", headers=auth(stack)).json()
    assert [(h["name"], h["protocol"], h["base_url"]) for h in helpers] == [
        ("weather", "mcp", mcp_url)
    ]
    # an admin still removes it
    assert (
        httpx.delete(f"{stack.core_url}/v1/helpers/weather", headers=auth(stack)).status_code == 204
    )


def test_mcp_tools_whose_names_clash_are_each_registered_and_called(stack: Stack) -> None:
    server = MCPServer("clash")

    @server.tool(name="Get.Weather")
    def dotted() -> str:
        """The dotted one."""
        return "dotted"

    @server.tool(name="get_weather")
    def plain() -> str:
        """The plain one."""
        return "plain"

    with serve_in_thread(server.streamable_http_app(), free_port()) as url:
        added = add_mcp(stack, "clash", url + "/mcp")
        assert added.status_code == 201, added.text
        names = [c["name"] for c in added.json()["capabilities"]]
        assert names == ["get_weather", "get_weather_2"]
        answers = [
            httpx.post(
                f"{stack.core_url}/v1/helpers/clash/capabilities/{name}",
                json={},
                headers=auth(stack),
                timeout=30,
            ).json()
            for name in names
        ]
    assert answers == [{"result": "dotted"}, {"result": "plain"}]
