"""An MCP server (built with the official `mcp` SDK, streamable HTTP) registered as a helper."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from tests.conftest import free_port
from tests.support.servers import serve_in_thread
from tests.support.stack import Stack
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


def test_an_mcp_servers_tools_become_capabilities(
    stack: Stack, upstream: MockUpstream, mcp_url: str
) -> None:
    added = httpx.post(
        f"{stack.core_url}/v1/helpers/mcp",
        json={"name": "weather", "url": mcp_url},
        headers=auth(stack),
        timeout=30,
    )
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
