"""The web chat channel's app: `create_app(settings)` serves the page, `/auth/session`, `/api/…`
(proxied to the core) and `/healthz`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from patchbay import __version__
from patchbay.asgi import BodyLimit
from patchbay.channels.heartbeat import heartbeats
from patchbay.channels.web.headers import SecurityHeaders
from patchbay.channels.web.proxy import CoreProxy
from patchbay.channels.web.session import key_of, require_page, session
from patchbay.channels.web.turns import checked_body
from patchbay.client import CoreClient
from patchbay.config import Settings
from patchbay.errors import PatchbayError

STATIC = Path(__file__).parent / "static"
# A body over this size is read only for a key the core accepts, so nobody without one can keep the
# channel (and the core) busy with bodies the core would refuse anyway.
CHECKED_BODY_BYTES = 64 * 1024


async def _error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PatchbayError)  # noqa: S101 - registered for PatchbayError only
    headers = {"Retry-After": "2"} if exc.retryable else None
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status, headers=headers)


def _large_body(request: Request) -> bool:
    """Whether the call brings a body over `CHECKED_BODY_BYTES`, or one of a size not declared."""
    if request.method not in ("POST", "PATCH"):
        return False
    declared = request.headers.get("content-length", "")
    return not declared.isdigit() or int(declared) > CHECKED_BODY_BYTES


def create_app(settings: Settings, *, core: CoreClient | None = None) -> Starlette:
    web = settings.web
    client = core or CoreClient(settings.core.base_url, read_timeout_s=30.0)
    proxy = CoreProxy(settings.core.base_url, read_timeout_s=web.request_timeout_s)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            async with heartbeats(
                client, settings, module="web", url=f"http://{web.host}:{web.port}"
            ):
                yield
        finally:
            await client.close()
            await proxy.close()

    async def page(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def favicon(_request: Request) -> Response:
        return FileResponse(STATIC / "icon.svg", media_type="image/svg+xml")

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    async def auth(request: Request) -> Response:
        return await session(request, client)

    async def api(request: Request) -> Response:
        require_page(request)
        key = key_of(request)
        if _large_body(request):
            await client.me(key=key)
        path = request.path_params["path"]
        body = await checked_body(request, path)
        return await proxy.forward(request, path=path, key=key, body=body)

    return Starlette(
        routes=[
            Route("/", page),
            Route("/favicon.ico", favicon),
            Route("/healthz", healthz),
            Route("/auth/session", auth, methods=["GET", "POST", "DELETE"]),
            Route("/api/{path:path}", api, methods=["GET", "POST", "PATCH", "DELETE"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(BodyLimit, max_bytes=web.max_body_bytes),
        ],
        exception_handlers={PatchbayError: _error},
        lifespan=lifespan,
    )
