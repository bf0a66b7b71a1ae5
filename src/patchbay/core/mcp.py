"""MCP servers as helpers: the official `mcp` SDK as the client, over streamable HTTP.

Registering an MCP server turns its tools into capabilities of a helper with protocol `mcp`; each
call opens a session, calls the tool and closes it, so a server that restarts costs nothing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from patchbay.errors import HelperFailed
from patchbay.schemas.helpers import Capability, HelperManifest

MCP_TIMEOUT_S = 30.0


@asynccontextmanager
async def _session(url: str) -> AsyncIterator[ClientSession]:
    async with (
        streamable_http_client(url) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        yield session


def capability_names(tool_names: list[str]) -> list[str]:
    """A capability name (lowercase, `[a-z0-9_-]`, at most 64) for each MCP tool's name, each
    its own: `Get.Weather` and `get_weather` are both tools a server may offer, and become
    `get_weather` and `get_weather_2` (the server is called by the tool's own name)."""
    names: list[str] = []
    for tool_name in tool_names:
        base = re.sub(r"[^a-z0-9_-]+", "_", tool_name.lower()).strip("_-") or "tool"
        name, count = base[:64], 1
        while name in names:
            count += 1
            name = f"{base[: 63 - len(str(count))]}_{count}"
        names.append(name)
    return names


async def manifest_of(name: str, url: str) -> HelperManifest:
    """The manifest of the MCP server at `url`: one capability per tool it lists."""
    try:
        async with asyncio.timeout(MCP_TIMEOUT_S), _session(url) as session:
            listed = await session.list_tools()
    except Exception as exc:
        shown = public_url(url)
        raise HelperFailed(f"the MCP server at {shown} refused: {_reason(exc, url)}") from exc
    names = capability_names([tool.name for tool in listed.tools])
    capabilities = [
        Capability(
            name=names[index],
            remote_name=tool.name,
            description=(tool.description or tool.name)[:4000],
            input_schema=dict(tool.input_schema or {}),
            output_schema=dict(getattr(tool, "output_schema", None) or {}),
            timeout_s=MCP_TIMEOUT_S,
        )
        for index, tool in enumerate(listed.tools)
    ]
    if not capabilities:
        raise HelperFailed(f"the MCP server at {public_url(url)} offers no tools")
    return HelperManifest(
        name=name,
        description=f"MCP server at {public_url(url)}",
        base_url=url,
        protocol="mcp",
        capabilities=capabilities,
    )


async def call_tool(url: str, tool: str, arguments: dict[str, object]) -> object:
    """Call one tool; its structured result, else its text."""
    try:
        async with _session(url) as session:
            result = await session.call_tool(tool, arguments)
    except Exception as exc:
        shown = public_url(url)
        raise HelperFailed(f"the MCP server at {shown} failed: {_reason(exc, url)}") from exc
    text = "".join(getattr(part, "text", "") for part in result.content)
    if result.is_error:
        raise HelperFailed(f"the MCP tool {tool} failed: {text[:500]}")
    structured = getattr(result, "structured_content", None)
    return structured if structured is not None else {"text": text}


async def ping(url: str, *, timeout_s: float = MCP_TIMEOUT_S) -> bool:
    """Whether the server answers a ping within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s), _session(url) as session:
            await session.send_ping()
    except Exception:  # noqa: BLE001 - down, whatever the reason
        return False
    return True


def public_url(url: str) -> str:
    """`url` without the parts that may hold a secret (user, password, query, fragment): an
    MCP server's token often travels in its URL."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _reason(exc: BaseException, url: str) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}".replace(url, public_url(url))[:300]
