"""A stand-in for an OpenAI-compatible upstream that speaks the real wire format.

Its `mode` says how it behaves: `ok` (answers `reply`, streamed word by word when asked to
stream), `slow` (waits `delay_s` first), `drip` (waits `delay_s` after each word), `garbage` (breaks off
with invalid JSON), `error` (answers 500), `cut` (closes the stream before `[DONE]`), `tools`
(calls the first tool it is offered with `tool_arguments`, then answers with what the tool said),
`raw` (streams the bytes in `raw_stream`, whatever they are). It records every request.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.servers import serve_in_thread


class MockUpstream:
    def __init__(self) -> None:
        self.mode = "ok"
        self.reply = "Hello from the mock upstream."
        self.delay_s = 0.0
        self.tool_arguments: dict[str, Any] = {}
        self.raw_stream = b""
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[MockUpstream]:
        from tests.conftest import free_port

        mock = cls()
        with serve_in_thread(mock, free_port()) as url:
            mock.base_url = url + "/v1"
            yield mock

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body or b"{}")
        self.requests.append(request)
        if self.mode == "error":
            await _send(
                send, 500, b'{"error": {"message": "upstream exploded"}}', "application/json"
            )
            return
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)
        if self.mode == "tools":
            await self._tools(send, request)
            return
        if request.get("stream"):
            await self._stream(send, request)
        else:
            await self._complete(send)

    async def _tools(self, send: Any, request: dict[str, Any]) -> None:
        """First a call of the first tool offered; once its result is back, an answer quoting it."""
        results = [m["content"] for m in request["messages"] if m["role"] == "tool"]
        if results or not request.get("tools"):
            text = f"The tool said: {results[-1]}" if results else self.reply
            message: dict[str, Any] = {"role": "assistant", "content": text}
            reason = "stop"
        else:
            name = request["tools"][0]["function"]["name"]
            arguments = json.dumps(self.tool_arguments)
            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            reason = "tool_calls"
        if not request.get("stream"):
            body = {"choices": [{"index": 0, "message": message, "finish_reason": reason}]}
            await _send(send, 200, json.dumps(body).encode(), "application/json")
            return
        if "tool_calls" in message:  # streamed in two pieces, as OpenAI does
            first, second = json.loads(json.dumps(message["tool_calls"])), message["tool_calls"]
            first[0]["function"]["arguments"] = arguments[: len(arguments) // 2]
            second = [{"index": 0, "function": {"arguments": arguments[len(arguments) // 2 :]}}]
            first[0]["index"] = 0
            chunks = [_chunk_of({"tool_calls": first}), _chunk_of({"tool_calls": second})]
        else:
            chunks = [_chunk_of({"content": message["content"]})]
        chunks.append(_chunk_of({}, reason))
        await _send(send, 200, b"".join(chunks) + b"data: [DONE]\n\n", "text/event-stream")

    async def _complete(self, send: Any) -> None:
        if self.mode in ("garbage", "cut"):
            await _send(send, 200, b'{"choices": [{"message": ', "application/json")
            return
        words = len(self.reply.split(" "))
        body = {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "mock",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.reply},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": words, "total_tokens": 7 + words},
        }
        await _send(send, 200, json.dumps(body).encode(), "application/json")

    async def _stream(self, send: Any, request: dict[str, Any]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        if self.mode == "raw":
            await send({"type": "http.response.body", "body": self.raw_stream})
            return
        words = self.reply.split(" ")
        for index, word in enumerate(words):
            if self.mode == "garbage" and index == 1:
                await send({"type": "http.response.body", "body": b"data: {not json\n\n"})
                return
            if self.mode == "cut" and index == 1:
                await send({"type": "http.response.body", "body": b""})
                return
            text = word if index == 0 else " " + word
            await send(
                {"type": "http.response.body", "body": _chunk({"content": text}), "more_body": True}
            )
            if self.mode == "drip":
                await asyncio.sleep(self.delay_s)
        tail = _chunk({}, finish_reason="stop")
        if (request.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": 7,
                "completion_tokens": len(words),
                "total_tokens": 7 + len(words),
            }
            tail += b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n"
        await send({"type": "http.response.body", "body": tail + b"data: [DONE]\n\n"})


def _chunk_of(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


def _chunk(delta: dict[str, str], finish_reason: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "mock",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def _send(send: Any, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
