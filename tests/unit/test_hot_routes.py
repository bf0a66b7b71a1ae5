"""Hot routes answer without the app's routing, with the app's own error handlers and limits."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from patchbay.asgi import BodyLimit
from patchbay.errors import InvalidRequest, PatchbayError
from patchbay.hot_routes import HotRoutes


async def hot(request: Request) -> Response:
    body = await request.body()
    if body == b"bad":
        raise InvalidRequest("a bad body")
    if body == b"bug":
        raise RuntimeError("no handler for this one")
    return JSONResponse({"served": "hot", "size": len(body), "state": request.app.state.name})


async def patchbay_error(_request: Request, exc: PatchbayError) -> JSONResponse:
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status)


def build() -> FastAPI:
    app = FastAPI()
    app.state.name = "the app"
    app.add_exception_handler(PatchbayError, patchbay_error)  # type: ignore[arg-type]
    app.add_middleware(HotRoutes, routes={("POST", "/hot"): hot})
    app.add_middleware(BodyLimit, max_bytes=100)

    @app.post("/hot")
    async def documented() -> dict[str, str]:
        return {"served": "by the app's router"}

    @app.get("/hot")
    async def other_method() -> dict[str, str]:
        return {"served": "GET, by the app"}

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_a_hot_route_is_served_by_its_endpoint(client: httpx.AsyncClient) -> None:
    answer = await client.post("/hot", content=b"12345")
    assert answer.json() == {"served": "hot", "size": 5, "state": "the app"}


async def test_other_methods_and_paths_go_to_the_app(client: httpx.AsyncClient) -> None:
    assert (await client.get("/hot")).json() == {"served": "GET, by the app"}
    assert (await client.post("/hot/")).status_code in (307, 404)  # the app's own answer
    assert (await client.post("/elsewhere")).status_code == 404


async def test_errors_get_the_apps_handlers(client: httpx.AsyncClient) -> None:
    answer = await client.post("/hot", content=b"bad")
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "a bad body"


async def test_an_error_without_a_handler_is_a_500(client: httpx.AsyncClient) -> None:
    assert (await client.post("/hot", content=b"bug")).status_code == 500


async def test_the_body_limit_holds_for_hot_routes(client: httpx.AsyncClient) -> None:
    declared = await client.post("/hot", content=b"x" * 101)
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * 40

    streamed = await client.post("/hot", content=chunks())
    assert streamed.status_code == 413
    assert streamed.json()["error"]["code"] == "payload_too_large"
