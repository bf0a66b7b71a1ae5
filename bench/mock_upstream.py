"""A fast OpenAI-compatible mock upstream for the gateway benchmark.

A raw ASGI app (no framework) served by uvicorn with uvloop and httptools, so that the
mock itself costs as little as possible and the measured differences belong to what sits
in front of it. It answers:

- ``POST /v1/chat/completions``: a ``chat.completion`` object, or with ``"stream": true``
  64 ``chat.completion.chunk`` SSE events of one token each (the first carries the role),
  a chunk with ``finish_reason: "stop"``, a usage chunk with empty ``choices`` when
  ``stream_options.include_usage`` is true, then ``data: [DONE]``. No artificial delays.
- ``GET /v1/models``: one model, ``gpt-mock``.
- ``GET /healthz``: 200.

Run it as ``python bench/mock_upstream.py --port 8123 [--host 127.0.0.1]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from functools import lru_cache
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MODEL_ID = "gpt-mock"
STREAM_TOKENS = 64
TOKENS: tuple[str, ...] = tuple(f"tok{i} " for i in range(STREAM_TOKENS))
CONTENT = "".join(TOKENS)

_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
]
_ids = itertools.count(1)
_PREFIX = f"chatcmpl-mock{os.getpid()}-".encode()


def _next_id() -> bytes:
    return _PREFIX + str(next(_ids)).encode()


def _tail(payload: dict[str, Any]) -> bytes:
    """Serialise the part of a chunk after id/object/created (without its opening brace)."""
    return orjson.dumps(payload)[1:]


@lru_cache(maxsize=64)
def _stream_tails(model: str) -> tuple[bytes, ...]:
    """Precomputed chunk bodies for one model: 64 tokens, then the stop chunk."""
    tails: list[bytes] = []
    for i, token in enumerate(TOKENS):
        delta: dict[str, str] = (
            {"role": "assistant", "content": token} if i == 0 else {"content": token}
        )
        tails.append(
            _tail(
                {
                    "model": model,
                    "system_fingerprint": None,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
            )
        )
    tails.append(
        _tail(
            {
                "model": model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
        )
    )
    return tuple(tails)


def _usage(prompt_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": STREAM_TOKENS,
        "total_tokens": prompt_tokens + STREAM_TOKENS,
    }


def _prompt_tokens(request: dict[str, Any]) -> int:
    """A cheap stand-in for a tokenizer: about one token per four characters of the prompt."""
    messages = request.get("messages")
    chars = 0
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                chars += len(message["content"])
    return max(1, chars // 4)


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


async def _chat(send: Send, request: dict[str, Any]) -> None:
    model = str(request.get("model") or MODEL_ID)
    prompt_tokens = _prompt_tokens(request)
    body = orjson.dumps(
        {
            "id": _next_id().decode(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": CONTENT},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(prompt_tokens),
        }
    )
    await _respond(send, 200, body)


async def _chat_stream(send: Send, request: dict[str, Any]) -> None:
    model = str(request.get("model") or MODEL_ID)
    options = request.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    head = (
        b'data: {"id":"'
        + _next_id()
        + b'","object":"chat.completion.chunk","created":'
        + str(int(time.time())).encode()
        + b","
    )
    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
    for tail in _stream_tails(model):
        await send({"type": "http.response.body", "body": head + tail + b"\n\n", "more_body": True})
    if include_usage:
        usage = _tail(
            {
                "model": model,
                "system_fingerprint": None,
                "choices": [],
                "usage": _usage(_prompt_tokens(request)),
            }
        )
        await send(
            {"type": "http.response.body", "body": head + usage + b"\n\n", "more_body": True}
        )
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


_MODELS_BODY = orjson.dumps(
    {
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "mock"}],
    }
)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI entry point."""
    if scope["type"] != "http":
        return
    method: str = scope["method"]
    path: str = scope["path"]
    if method == "POST" and path == "/v1/chat/completions":
        raw = await _read_body(receive)
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await _respond(send, 400, b'{"error":{"message":"invalid JSON body"}}')
            return
        if not isinstance(request, dict):
            await _respond(send, 400, b'{"error":{"message":"body must be an object"}}')
        elif request.get("stream") is True:
            await _chat_stream(send, request)
        else:
            await _chat(send, request)
    elif method == "GET" and path == "/v1/models":
        await _respond(send, 200, _MODELS_BODY)
    elif method == "GET" and path == "/healthz":
        await _respond(send, 200, b'{"status":"ok"}')
    else:
        await _respond(send, 404, b'{"error":{"message":"not found"}}')


def main(argv: list[str] | None = None) -> None:
    """Serve the mock until terminated."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
