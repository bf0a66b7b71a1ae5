"""Hot routes: the one request every model call makes, served without FastAPI's per-request layers.

Measured here, FastAPI's routing, dependency solving and endpoint wrapping cost about as much CPU
as the OpenAI channel's own work for a completion. `HotRoutes` is an ASGI middleware of the app:
a request whose method and path are one of its routes goes straight to that route's endpoint (a
Starlette `Request` in, a `Response` out), and what the endpoint raises goes to the app's own
exception handlers, so the answers and the errors are the ones the app gives; every other request
goes on to the app. Each route stays declared on the app too, for its OpenAPI docs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from patchbay.asgi import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class HotRoutes:
    def __init__(self, app: ASGIApp, *, routes: Mapping[tuple[str, str], Endpoint]) -> None:
        """`routes`: endpoints by (method, path); paths are exact (no parameters)."""
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = None
        if scope["type"] == "http":
            endpoint = self.routes.get((scope["method"], scope["path"]))
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = _handler_for(scope["app"].exception_handlers, exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)


def _handler_for(handlers: Mapping[Any, Any], exc: Exception) -> Any:
    """The app's handler for `exc`: the one for its class or the nearest base class."""
    for kind in type(exc).__mro__:
        if kind in handlers:
            return handlers[kind]
    return None
