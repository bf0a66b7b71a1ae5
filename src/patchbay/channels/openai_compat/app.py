"""The OpenAI channel's app: `create_app(settings)`; errors always in OpenAI's shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from patchbay import __version__
from patchbay.asgi import TELEMETRY_OFF, BodyLimit
from patchbay.channels.heartbeat import heartbeats
from patchbay.channels.openai_compat.errors import error_body, openai_error, too_large_body
from patchbay.channels.openai_compat.router import chat_completions, router
from patchbay.channels.openai_compat.schemas import ChatCompletionRequest
from patchbay.client import CoreClient
from patchbay.config import Settings
from patchbay.errors import PatchbayError
from patchbay.hot_routes import HotRoutes
from patchbay.json_body import add_schemas


async def _patchbay_error(_request: Request, exc: PatchbayError) -> JSONResponse:
    return openai_error(exc)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """No such route, or not with this method: in OpenAI's shape, as OpenAI says it."""
    unrouted = exc.status_code in (404, 405)
    message = f"Invalid URL ({request.method} {request.url.path})" if unrouted else str(exc.detail)
    return JSONResponse(
        error_body(message, status=exc.status_code, code=None),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    message = f"{'.'.join(loc) or 'body'}: {first.get('msg', 'invalid request')}"
    if first.get("type") == "json_invalid":
        message = "the request body is not valid JSON"
    return JSONResponse(
        error_body(message, status=400, code="invalid_request", param=".".join(loc) or None),
        status_code=400,
    )


def create_app(settings: Settings, *, core: CoreClient | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = core or CoreClient(
            settings.core.base_url, read_timeout_s=settings.openai.request_timeout_s
        )
        app.state.core = client
        url = f"http://{settings.openai.host}:{settings.openai.port}"
        try:
            async with heartbeats(client, settings, module="openai", url=url):
                yield
        finally:
            await client.close()

    app = FastAPI(
        title="patchbay OpenAI channel",
        version=__version__,
        lifespan=lifespan,
        telemetry=TELEMETRY_OFF,
    )
    app.add_exception_handler(PatchbayError, _patchbay_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_middleware(HotRoutes, routes={("POST", "/v1/chat/completions"): chat_completions})
    # outside: hot routes are limited too
    app.add_middleware(BodyLimit, max_bytes=settings.openai.max_body_bytes, body=too_large_body)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.include_router(router)
    add_schemas(app, ChatCompletionRequest)
    return app
