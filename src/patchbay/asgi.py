"""Small pure-ASGI pieces shared by every HTTP module (the core and the channels)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from fastapi.telemetry import TelemetryConfig

from patchbay.errors import PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ErrorBody = Callable[[str], dict[str, object]]

# FastAPI's native OpenTelemetry support asks OpenTelemetry on every request whether a provider is
# configured (environment lookups included): ~5% of the core's CPU per call, measured here.
# patchbay configures none, so its FastAPI apps (`FastAPI(telemetry=TELEMETRY_OFF)`) leave it off.
TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def _default_body(message: str) -> dict[str, object]:
    return {"error": {"code": "payload_too_large", "message": message}}


class BodyLimit:
    """Refuses request bodies over `max_bytes` with a 413, whether declared or streamed.

    A declared size is refused here; a streamed body that grows past the limit raises
    `PayloadTooLarge` where the app reads it, so the app's own error handler answers.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, body: ErrorBody = _default_body) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise PayloadTooLarge(f"the request body is over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, send: Send) -> None:
        payload = orjson.dumps(self.body(f"the request body is over {self.max_bytes} bytes"))
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})
