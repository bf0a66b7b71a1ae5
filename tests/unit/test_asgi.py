"""The body limit refuses oversize requests whether their size is declared or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from patchbay.asgi import BodyLimit
from patchbay.errors import PayloadTooLarge


async def echo_size(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


async def too_large(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": {"code": getattr(exc, "code", "")}}, status_code=413)


APP = BodyLimit(
    Starlette(
        routes=[Route("/", echo_size, methods=["POST"])],
        exception_handlers={PayloadTooLarge: too_large},
    ),
    max_bytes=100,
)


async def post(content: bytes | object) -> httpx.Response:
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post("/", content=content)  # type: ignore[arg-type]


async def test_small_bodies_pass() -> None:
    response = await post(b"x" * 100)
    assert response.json() == {"size": 100}


async def test_declared_oversize_body_is_refused() -> None:
    response = await post(b"x" * 101)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_streamed_oversize_body_is_refused() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 30

    response = await post(chunks())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
