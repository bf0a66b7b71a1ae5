"""Reading an HTTP answer's body whole, up to a limit, with aiohttp."""

from __future__ import annotations

import aiohttp


async def read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None once it is (or says it will be) over `limit` bytes, without
    reading the rest. (`content.read(n)` alone returns what has arrived so far, which cut large
    bodies short.)"""
    if response.content_length is not None and response.content_length > limit:
        return None
    data = bytearray()
    async for chunk in response.content.iter_any():
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)
