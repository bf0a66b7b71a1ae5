"""A helper written against the HTTP contract alone (no SDK), which can be told to misbehave."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.servers import serve_in_thread

ADD_INPUT = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
ADD_OUTPUT = {"type": "object", "properties": {"sum": {"type": "integer"}}, "required": ["sum"]}


@dataclass
class HandHelper:
    """A helper written against the contract alone; `mode` makes it misbehave."""

    mode: str = "ok"
    calls: list[str] = field(default_factory=list)
    url: str = ""

    def manifest(self, name: str = "calc") -> dict[str, Any]:
        return {
            "name": name,
            "version": "1",
            "description": "adds numbers, reads text files",
            "base_url": self.url,
            "capabilities": [
                {
                    "name": "add",
                    "description": "The sum of a and b.",
                    "input_schema": ADD_INPUT,
                    "output_schema": ADD_OUTPUT,
                    "idempotent": True,
                    "timeout_s": 1,
                },
                {
                    "name": "text",
                    "description": "A text file's text.",
                    "kind": "to-text",
                    "media_types": ["text/*"],
                },
            ],
        }

    def app(self) -> Starlette:
        async def add(request: Request) -> Response:
            self.calls.append("add")
            args = await request.json()
            if self.mode == "error":
                return JSONResponse({"error": {"message": "boom"}}, status_code=500)
            if self.mode == "slow":
                await asyncio.sleep(3)
            if self.mode == "lies":
                return JSONResponse({"sum": "many"})
            return JSONResponse({"sum": args["a"] + args["b"]})

        async def text(request: Request) -> Response:
            self.calls.append("text")
            return JSONResponse({"text": (await request.body()).decode(), "format": "plain"})

        async def health(_request: Request) -> Response:
            return JSONResponse({"status": "ok"})

        return Starlette(
            routes=[
                Route("/capabilities/add", add, methods=["POST"]),
                Route("/capabilities/text", text, methods=["POST"]),
                Route("/health", health),
            ]
        )


@contextmanager
def running_helper(host: str = "127.0.0.1") -> Iterator[HandHelper]:
    """A HandHelper served on `host` (another loopback address plays another machine)."""
    from tests.conftest import free_port

    hand = HandHelper()
    with serve_in_thread(hand.app(), free_port(), host=host) as url:
        hand.url = url
        yield hand
