"""The core's FastAPI app: `create_app(settings)` builds it; the lifespan opens and closes the hub."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from patchbay import __version__
from patchbay.api.routes import (
    assistants,
    catalog,
    chats,
    deliveries,
    helpers,
    instructions,
    senders,
    status,
    turns,
    users,
)
from patchbay.asgi import TELEMETRY_OFF, BodyLimit
from patchbay.config import Settings
from patchbay.core.hub import Hub
from patchbay.errors import PatchbayError
from patchbay.hot_routes import HotRoutes
from patchbay.json_body import add_schemas
from patchbay.schemas.turns import TurnCreate

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024 * 1024


INSTRUCTIONS_PATH = "/v1/instructions"


def error_response(exc: PatchbayError, *, path: str = "") -> JSONResponse:
    headers = {"Retry-After": "2"} if exc.retryable else None
    body: dict[str, object] = {"error": exc.to_dict()}
    if path == INSTRUCTIONS_PATH:  # instruction callers always get an instruction envelope
        body = {"status": "error", "type": None, "message": exc.message, **body}
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def _patchbay_error(request: Request, exc: PatchbayError) -> JSONResponse:
    return error_response(exc, path=request.url.path)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return JSONResponse(
        {"error": {"code": "invalid_request", "message": "; ".join(problems), "retryable": False}},
        status_code=400,
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error", exc_info=exc)
    error = PatchbayError("an internal error occurred")
    return error_response(error, path=request.url.path)


def create_app(settings: Settings, *, hub: Hub | None = None) -> FastAPI:
    """The core app. Pass a ready `hub` to share one with a test; its lifespan still starts it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        the_hub = hub or Hub(settings)
        await the_hub.prepare()
        await the_hub.start()
        app.state.hub = the_hub
        try:
            yield
        finally:
            await the_hub.close()

    app = FastAPI(
        title="patchbay core",
        version=__version__,
        lifespan=lifespan,
        telemetry=TELEMETRY_OFF,
    )
    app.add_exception_handler(PatchbayError, _patchbay_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(HotRoutes, routes={("POST", "/v1/turns"): turns.start_turn})
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)  # outside: hot routes are limited too

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    for module in (
        turns,
        chats,
        users,
        catalog,
        assistants,
        helpers,
        senders,
        deliveries,
        status,
        instructions,
    ):
        app.include_router(module.router)
    add_schemas(app, TurnCreate)
    return app
