"""The web channel's proxy passes the core's answer headers on whole: a header the core sends on
several lines reaches the page with every value, not only its last."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from patchbay.channels.web.proxy import CoreProxy


async def test_a_header_on_several_lines_reaches_the_page_with_every_value() -> None:
    async def core(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            b"Cache-Control: no-store\r\nCache-Control: private\r\n\r\n{}"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(core, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = CoreProxy(f"http://127.0.0.1:{port}", read_timeout_s=5)
    scope = {"type": "http", "method": "GET", "path": "/api/me", "query_string": b"", "headers": []}
    try:
        answer = await proxy.forward(Request(scope), path="me", key="pb-key")
    finally:
        await proxy.close()
        server.close()
    assert answer.headers.getlist("cache-control") == ["no-store, private"]
    assert answer.body == b"{}"
