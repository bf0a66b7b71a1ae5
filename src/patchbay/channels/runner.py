"""Runs one plugin channel as its own process: its routes and /healthz under uvicorn, its `run()`
beside them, and heartbeats to the core."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from patchbay.asgi import TELEMETRY_OFF, BodyLimit
from patchbay.channels.base import Channel, channel_settings
from patchbay.channels.heartbeat import heartbeats
from patchbay.client import CoreClient
from patchbay.config import Settings
from patchbay.errors import PatchbayError
from patchbay.tokens import module_token


def create_app(settings: Settings, channel_class: type[Channel[Any]]) -> FastAPI:
    """The channel's app; its lifespan starts the channel's `run()` and its heartbeats."""
    own = channel_settings(channel_class, dict(settings.channels.get(channel_class.name, {})))
    secret = settings.installation_secret()
    core = CoreClient(settings.core.base_url, module_token=module_token(secret))

    channel = channel_class(own, core)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = f"http://{own.host}:{own.port}" if own.port else channel_class.name
        app.state.run = asyncio.create_task(channel.run())
        try:
            async with heartbeats(core, settings, module=channel_class.name, url=url):
                yield
        finally:
            app.state.run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await app.state.run
            await channel.close()
            await core.close()

    app = FastAPI(
        title=f"patchbay {channel_class.name} channel", lifespan=lifespan, telemetry=TELEMETRY_OFF
    )

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Down when the channel's own servers or pollers (`run()`) have stopped."""
        run: asyncio.Task[None] | None = getattr(app.state, "run", None)
        if run is not None and run.done() and not run.cancelled() and run.exception():
            reason = f"{channel_class.name} stopped: {run.exception()}"
            return JSONResponse({"status": "down", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ok"})

    app.add_middleware(BodyLimit, max_bytes=own.max_body_bytes)
    app.add_exception_handler(PatchbayError, _patchbay_error)  # type: ignore[arg-type]
    app.state.channel = channel
    router = channel.router()
    if router is not None:
        app.include_router(router)
    return app


async def _patchbay_error(_request: Request, exc: PatchbayError) -> JSONResponse:
    """A channel's route (or its body limit) refused the request: the error as the core's."""
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status)
