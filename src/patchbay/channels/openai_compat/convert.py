"""Between OpenAI's wire format and patchbay's turns and job events."""

from __future__ import annotations

import time
from typing import Any

import orjson

from patchbay.channels.openai_compat.schemas import ChatCompletionRequest, ChatMessage
from patchbay.errors import InvalidRequest
from patchbay.schemas.chats import Usage
from patchbay.schemas.options import GenerationOptions
from patchbay.schemas.turns import MessageIn, TurnCreate

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
FINGERPRINT = "fp_patchbay"


def _text(message: ChatMessage, index: int) -> str:
    if message.role not in _ROLES:
        raise InvalidRequest(f"messages[{index}]: {message.role!r} messages are not supported yet")
    if message.content is None:
        raise InvalidRequest(f"messages[{index}]: content is required")
    if isinstance(message.content, str):
        return message.content
    texts = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise InvalidRequest(
                f"messages[{index}]: {part.type!r} content parts are not supported yet"
            )
        texts.append(part.text)
    return "".join(texts)


def to_turn(request: ChatCompletionRequest) -> TurnCreate:
    """All messages but the last become the history; the last, from the user, is the turn."""
    messages = [(_ROLES.get(m.role, m.role), _text(m, i)) for i, m in enumerate(request.messages)]
    *history, (role, text) = messages
    if role != "user":
        raise InvalidRequest("the last message must be from the user")
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    options = GenerationOptions(
        temperature=request.temperature,
        top_p=request.top_p,
        max_tokens=request.max_completion_tokens or request.max_tokens,
        stop=stop,
        seed=request.seed,
        frequency_penalty=request.frequency_penalty,
        presence_penalty=request.presence_penalty,
    )
    return TurnCreate(
        channel="openai",
        text=text,
        history=[MessageIn(role=r, content=c) for r, c in history] or None,
        model=request.model,
        options=options,
        stream=request.stream,
    )


def usage_body(usage: Usage | None) -> dict[str, int]:
    prompt = (usage.input_tokens if usage else None) or 0
    completion = (usage.output_tokens if usage else None) or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion(
    *, job_id: str, model: str, content: str, finish_reason: str | None, usage: Usage | None
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{job_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason or "stop",
            }
        ],
        "usage": usage_body(usage),
    }


class ChunkWriter:
    """Builds the `data: …` lines of one streamed completion."""

    def __init__(self, *, job_id: str, model: str, include_usage: bool) -> None:
        self.job_id = job_id
        self.ended = False  # set once the stream's last chunk is written
        self.sent_content = False  # set once a token has gone to the client
        self._base = {
            "id": f"chatcmpl-{job_id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": FINGERPRINT,
        }
        self._include_usage = include_usage

    def _line(self, payload: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    def delta(self, delta: dict[str, str], finish_reason: str | None = None) -> bytes:
        payload: dict[str, Any] = {
            **self._base,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self._include_usage:
            payload["usage"] = None
        return self._line(payload)

    def end(self, finish_reason: str | None, usage: Usage | None) -> bytes:
        lines = self.delta({}, finish_reason or "stop")
        if self._include_usage:
            lines += self._line({**self._base, "choices": [], "usage": usage_body(usage)})
        self.ended = True
        return lines + b"data: [DONE]\n\n"

    def error(self, message: str, code: str) -> bytes:
        body = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
        self.ended = True
        return self._line(body) + b"data: [DONE]\n\n"
