"""The WebSocket channel's app: `create_app(settings)` serves `/ws/` and `/healthz`."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from patchbay import __version__
from patchbay.channels.heartbeat import heartbeats
from patchbay.channels.ws.session import Session
from patchbay.client import CoreClient
from patchbay.config import Settings

PATH = "/ws/"
_KEY_IN_QUERY = re.compile(r"(api_key=)[^&\s\"]*")


class RedactKeys(logging.Filter):
    """Hides `?api_key=` values in uvicorn's WebSocket log lines: keys never reach the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _KEY_IN_QUERY.sub(r"\1…", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def create_app(settings: Settings, *, core: CoreClient | None = None) -> Starlette:
    ws = settings.ws
    client = core or CoreClient(settings.core.base_url, read_timeout_s=ws.request_timeout_s)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        server_log, redact = logging.getLogger("uvicorn.error"), RedactKeys()
        server_log.addFilter(redact)
        try:
            async with heartbeats(
                client, settings, module="ws", url=f"ws://{ws.host}:{ws.port}{PATH}"
            ):
                yield
        finally:
            await client.close()
            server_log.removeFilter(redact)

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    async def connect(websocket: WebSocket) -> None:
        await Session(websocket, client, ws).serve()

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            WebSocketRoute(PATH, connect),
            WebSocketRoute(PATH.rstrip("/"), connect),
        ],
        lifespan=lifespan,
    )
