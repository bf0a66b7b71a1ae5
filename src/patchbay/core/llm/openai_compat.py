"""An `llm` model for any OpenAI-compatible server (vLLM, llama.cpp, Ollama, LM Studio, OpenAI).

Unlike `llm`'s own OpenAI plugin, it sends on a client kept per server (see `http1`), so a call
costs a request on a kept connection, not a new client.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import llm
import orjson
from llm.parts import AttachmentPart, TextPart, ToolCallPart, ToolResultPart
from pydantic import Field

from patchbay.errors import (
    ProviderError,
    ProviderProtocolError,
    ProviderTimeout,
    ProviderUnavailable,
)
from patchbay.http1 import (
    ConnectFailed,
    ConnectionBroken,
    Http1Client,
    ProtocolError,
    ReadTimeout,
    Response,
)

# The audio types OpenAI's `input_audio` part carries, by the `format` it names them with.
AUDIO_FORMATS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3", "audio/mp3": "mp3"}


class ChatOptions(llm.Options):
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: list[str] | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None


class OpenAICompatModel(llm.AsyncModel):
    """Streams chat completions from `api_base`, reports the upstream's token usage, passes
    tools and their calls (OpenAI's function calling) between `llm` and the upstream, and sends
    files of its `attachment_types` (configured per model) as content parts."""

    can_stream = True
    supports_tools = True

    class Options(ChatOptions):
        pass

    def __init__(
        self,
        *,
        model_id: str,
        upstream_model: str,
        api_key: str | None,
        client: Http1Client,
        attachment_types: frozenset[str] = frozenset(),
    ) -> None:
        """`client`: the upstream's, on its `api_base`, with its timeouts."""
        self.model_id = model_id
        self.attachment_types = attachment_types
        self.upstream_model = upstream_model
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._client = client

    def request_body(self, prompt: llm.Prompt, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.upstream_model,
            "messages": [wire for message in prompt.messages for wire in _wire(message)],
            "stream": stream,
        }
        if prompt.tools:
            body["tools"] = [_tool(t) for t in prompt.tools if isinstance(t, llm.Tool)]
        if stream:
            body["stream_options"] = {"include_usage": True}
        for key, value in prompt.options:
            if value is not None:
                body[key] = value
        return body

    async def execute(
        self,
        prompt: llm.Prompt,
        stream: bool,
        response: llm.AsyncResponse,
        conversation: llm.AsyncConversation | None,
    ) -> AsyncGenerator[str, None]:
        body = orjson.dumps(self.request_body(prompt, stream=stream))
        answered = False
        try:
            async with self._client.request(
                "POST", "/chat/completions", body=body, headers=self._headers
            ) as http:
                answered = True
                if http.status >= 400:
                    raise _status_error(http.status, await http.read())
                calls = _ToolCalls()
                if not stream:
                    for delta in _deltas(_parse(await http.read()), response, calls):
                        yield delta
                else:
                    async for delta in _read_stream(http, response, calls):
                        yield delta
                calls.hand_to(response)
        except ReadTimeout as exc:
            raise ProviderTimeout(f"{self.model_id}: the upstream stopped answering") from exc
        except ConnectFailed as exc:
            raise ProviderUnavailable(f"{self.model_id}: cannot reach the upstream: {exc}") from exc
        except ConnectionBroken as exc:
            if answered:
                raise ProviderProtocolError(
                    f"{self.model_id}: the upstream broke off: {exc}"
                ) from exc
            raise ProviderUnavailable(f"{self.model_id}: the upstream hung up: {exc}") from exc
        except ProtocolError as exc:
            raise ProviderProtocolError(f"{self.model_id}: {exc}") from exc


class _ToolCalls:
    """Tool calls as they arrive in pieces (streamed) or whole, handed to `llm` at the end."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, pieces: list[dict[str, Any]]) -> None:
        for position, piece in enumerate(pieces):
            call = self._calls.setdefault(
                int(piece.get("index", position)), {"id": None, "name": "", "arguments": ""}
            )
            function = piece.get("function") or {}
            call["id"] = piece.get("id") or call["id"]
            call["name"] += function.get("name") or ""
            call["arguments"] += function.get("arguments") or ""

    def hand_to(self, response: llm.AsyncResponse) -> None:
        for call in self._calls.values():
            try:
                arguments = orjson.loads(call["arguments"] or "{}")
            except orjson.JSONDecodeError as exc:
                raise ProviderProtocolError(
                    f"the upstream called {call['name']} with arguments that are not JSON"
                ) from exc
            response.add_tool_call(
                llm.ToolCall(name=call["name"], arguments=arguments, tool_call_id=call["id"])
            )


async def _read_stream(
    http: Response, response: llm.AsyncResponse, calls: _ToolCalls
) -> AsyncGenerator[str, None]:
    buffer = b""
    async for data in http.chunks():
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                return
            for delta in _deltas(_parse(payload), response, calls):
                yield delta
    raise ProviderProtocolError("the upstream closed the stream before [DONE]")


def _deltas(chunk: dict[str, Any], response: llm.AsyncResponse, calls: _ToolCalls) -> list[str]:
    """The text in a streamed chunk or a whole completion; records usage, finish reason and tool
    calls."""
    if "error" in chunk:
        raise ProviderError(f"the upstream failed: {_error_message(chunk)}")
    usage = chunk.get("usage")
    if usage:
        response.set_usage(input=usage.get("prompt_tokens"), output=usage.get("completion_tokens"))
    deltas = []
    for choice in chunk.get("choices") or ():
        message = choice.get("delta") or choice.get("message") or {}
        content = message.get("content")
        if content:
            deltas.append(content)
        if message.get("tool_calls"):
            calls.add(message["tool_calls"])
        if choice.get("finish_reason"):
            response.response_json = {"finish_reason": choice["finish_reason"]}
    return deltas


def _parse(data: bytes) -> dict[str, Any]:
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProviderProtocolError(f"the upstream sent invalid JSON: {data[:80]!r}") from exc
    if not isinstance(chunk, dict):
        raise ProviderProtocolError(f"the upstream sent {type(chunk).__name__}, not an object")
    return chunk


def _wire(message: llm.Message) -> list[dict[str, Any]]:
    """One `llm` message in OpenAI's wire format: text (with files, as content parts), tool
    calls, or tool results."""
    text, calls, results, files = [], [], [], []
    for part in message.parts:
        if isinstance(part, TextPart):
            text.append(part.text)
        elif isinstance(part, AttachmentPart) and part.attachment is not None:
            files.append(_file_part(part.attachment))
        elif isinstance(part, ToolCallPart):
            arguments = orjson.dumps(part.arguments).decode()
            calls.append(
                {
                    "type": "function",
                    "id": part.tool_call_id,
                    "function": {"name": part.name, "arguments": arguments},
                }
            )
        elif isinstance(part, ToolResultPart):
            results.append(
                {"role": "tool", "tool_call_id": part.tool_call_id, "content": part.output}
            )
    if message.role == "tool":
        return results
    entry: dict[str, Any] = {"role": message.role, "content": "".join(text)}
    if files:
        joined = entry["content"]
        entry["content"] = [{"type": "text", "text": joined}, *files] if joined else files
    if calls:
        entry["tool_calls"] = calls
        entry["content"] = entry["content"] or None
    return [entry]


def _file_part(attachment: llm.Attachment) -> dict[str, Any]:
    """A file as an OpenAI content part: images by data URL, wav and mp3 as `input_audio`, any
    other type as a `file` part (as OpenAI takes PDFs)."""
    media_type = attachment.resolve_type()
    data = attachment.base64_content()
    audio_format = AUDIO_FORMATS.get(media_type)
    if audio_format is not None:
        return {"type": "input_audio", "input_audio": {"data": data, "format": audio_format}}
    url = f"data:{media_type};base64,{data}"
    if media_type.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": url}}
    return {"type": "file", "file": {"file_data": url}}


def _tool(tool: llm.Tool) -> dict[str, Any]:
    parameters = tool.input_schema or {"type": "object", "properties": {}}
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description or "",
            "parameters": parameters,
        },
    }


def _error_message(payload: dict[str, Any]) -> str:
    error = payload.get("error")
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error)


def _status_error(status: int, body: bytes) -> ProviderError:
    try:
        detail = _error_message(orjson.loads(body))
    except (orjson.JSONDecodeError, AttributeError):
        detail = body[:200].decode("utf-8", "replace")
    message = f"the upstream answered {status}: {detail}"
    if status == 429 or status >= 500:
        return ProviderUnavailable(message)
    return ProviderError(message)
