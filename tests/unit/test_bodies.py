"""Reading a body whole up to a limit, against a real aiohttp server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from patchbay.bodies import read_at_most

PIECE = b"x" * 65_536


async def chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(int(request.query["pieces"])):  # in many network reads
        await response.write(PIECE)
    await response.write_eof()
    return response


async def sized(request: web.Request) -> web.Response:
    return web.Response(body=PIECE * int(request.query["pieces"]))


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/sized", sized)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.parametrize("kind", ["chunked", "sized"])
async def test_a_body_is_read_whole_up_to_the_limit(server: str, kind: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server}/{kind}?pieces=16") as response:
            assert await read_at_most(response, 16 * len(PIECE)) == PIECE * 16
        async with http.get(f"{server}/{kind}?pieces=17") as response:
            assert await read_at_most(response, 16 * len(PIECE)) is None
