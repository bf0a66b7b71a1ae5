"""Between OpenAI's wire format and patchbay's turns and job events."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import ValidationError

from patchbay.channels.openai_compat.schemas import ChatCompletionRequest, ChatMessage, ContentPart
from patchbay.errors import InvalidRequest
from patchbay.schemas.chats import Usage
from patchbay.schemas.options import GenerationOptions
from patchbay.schemas.turns import AttachmentIn, MessageIn, TurnCreate

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
FINGERPRINT = "fp_patchbay"


AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg"}


def _content(message: ChatMessage, index: int) -> tuple[str, list[AttachmentIn]]:
    """A message's text and its files (images, audio, files as data URLs or base64)."""
    if message.role not in _ROLES:
        raise InvalidRequest(f"messages[{index}]: {message.role!r} messages are not supported yet")
    if message.content is None:
        raise InvalidRequest(f"messages[{index}]: content is required")
    if isinstance(message.content, str):
        return message.content, []
    texts: list[str] = []
    files: list[AttachmentIn] = []
    for part in message.content:
        if part.type == "text" and part.text is not None:
            texts.append(part.text)
        else:
            files.append(_attachment(part, index))
    return "".join(texts), files


def _attachment(part: ContentPart, index: int) -> AttachmentIn:
    extra = part.model_extra or {}
    where = f"messages[{index}]: a {part.type!r} part"
    if part.type == "image_url":
        url = str((extra.get("image_url") or {}).get("url", ""))
        if not url.startswith("data:"):
            raise InvalidRequest(f"{where} must hold a data: URL (patchbay fetches no URLs)")
        return AttachmentIn(data=url)
    if part.type == "input_audio":
        audio = extra.get("input_audio") or {}
        media_type = AUDIO_TYPES.get(str(audio.get("format", "")).lower())
        if media_type is None:
            raise InvalidRequest(f"{where} needs a format: {', '.join(AUDIO_TYPES)}")
        return AttachmentIn(media_type=media_type, data=str(audio.get("data", "")))
    if part.type == "file":
        file = extra.get("file") or {}
        return AttachmentIn(data=str(file.get("file_data", "")), filename=file.get("filename"))
    raise InvalidRequest(f"{where} is not supported (text, image_url, input_audio, file)")


# Parameters that change what a model must answer, which patchbay cannot pass on: refused, not
# dropped (the client would get prose in place of JSON or a tool call, told nothing), unless the
# value asks for nothing (`tools: []`, `tool_choice: "none"`, `response_format` of text).
_REFUSED: dict[str, Callable[[Any], bool]] = {
    "tools": lambda value: bool(value),
    "functions": lambda value: bool(value),
    "tool_choice": lambda value: value not in (None, "none", "auto"),
    "function_call": lambda value: value not in (None, "none", "auto"),
    "response_format": lambda value: value is not None and value != {"type": "text"},
    "logprobs": lambda value: bool(value),
    "top_logprobs": lambda value: value is not None,
    "audio": lambda value: value is not None,
}


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    for name, value in (request.model_extra or {}).items():
        refused = _REFUSED.get(name)
        if refused is not None and refused(value):
            raise InvalidRequest(f"{name}: not supported by patchbay yet; leave it out")


def to_turn(request: ChatCompletionRequest) -> TurnCreate:
    """All messages but the last become the history; the last, from the user, is the turn."""
    _refuse_unsupported(request)
    messages = []
    for index, message in enumerate(request.messages):
        text, files = _content(message, index)
        try:
            messages.append(
                MessageIn(
                    role=_ROLES.get(message.role, message.role), content=text, attachments=files
                )
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"]))
            raise InvalidRequest(f"messages[{index}].{where}: {first['msg']}") from exc
    *history, last = messages
    if last.role != "user":
        raise InvalidRequest("the last message must be from the user")
    if not last.content and not last.attachments:
        raise InvalidRequest(f"messages[{len(messages) - 1}].content: the last message is empty")
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    try:
        return _turn(request, history, last, stop)
    except ValidationError as exc:  # a limit of patchbay's own (options, history length)
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])).replace("history", "messages")
        raise InvalidRequest(f"{where or 'body'}: {first['msg']}") from exc


def _turn(
    request: ChatCompletionRequest,
    history: list[MessageIn],
    last: MessageIn,
    stop: list[str] | None,
) -> TurnCreate:
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
        text=last.content,
        # The files of earlier messages are read only if the core has not stored them before.
        history=history or None,
        model=request.model,
        options=options,
        stream=bool(request.stream),
        attachments=last.attachments,
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
