"""`POST /v1/chat/completions` and `GET /v1/models`, served by turning each request into a turn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from patchbay.channels.openai_compat.convert import ChunkWriter, completion, to_turn
from patchbay.channels.openai_compat.schemas import ChatCompletionRequest
from patchbay.client import CoreClient
from patchbay.errors import AuthenticationFailed, ModelNotFound, PatchbayError, error_from_dict
from patchbay.json_body import documented, read_body
from patchbay.schemas.catalog import ModelRead
from patchbay.schemas.jobs import JobEvent

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1")


def _client(request: Request) -> CoreClient:
    client: CoreClient = request.app.state.core
    return client


def _key(request: Request) -> str:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthenticationFailed(
            "no API key; send it as the OpenAI API key (`Authorization: Bearer <key>`)"
        )
    return key.strip()


def _failure(event: JobEvent) -> PatchbayError:
    info = event.error
    data: dict[str, object] = (
        info.model_dump() if info else {"code": "upstream_error", "message": "the job failed"}
    )
    return error_from_dict(data, 502)


@router.post(
    "/chat/completions", response_model=None, openapi_extra=documented(ChatCompletionRequest)
)
async def chat_completions(request: Request) -> Response:
    """Served as a hot route (see `hot_routes`): it reads the key and the body itself."""
    key = _key(request)
    body = await read_body(request, ChatCompletionRequest)
    turn = to_turn(body)
    client = _client(request)
    if not body.stream:
        result = await client.run_turn(turn, key=key)
        outcome = result.outcome
        if outcome.type != "done":
            raise _failure(outcome)
        return Response(
            orjson.dumps(
                completion(
                    job_id=result.turn.job_id,
                    model=result.turn.model,
                    content=outcome.content or "",
                    finish_reason=outcome.finish_reason,
                    usage=outcome.usage,
                )
            ),
            media_type="application/json",
        )
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return await _stream(request, client, turn, key, include_usage)


async def _stream(
    request: Request, client: CoreClient, turn: Any, key: str, include_usage: bool
) -> Response:
    """Wait for the first token (or the end) so an early failure still gets a real HTTP status.

    A client that leaves meanwhile (a long prompt's first token can take a while) has the
    generation stopped, as one that leaves during the stream does."""
    stack = AsyncExitStack()
    created, batches = await stack.enter_async_context(client.stream_turn(turn, key=key))
    try:
        first = await _first_output_unless_gone(request, batches)
    except BaseException:
        await stack.aclose()
        raise
    if first is None:
        await stack.aclose()
        await _cancel(client, created.job_id, key)
        return Response(status_code=499)  # nobody reads it: the client has gone
    writer = ChunkWriter(job_id=created.job_id, model=created.model, include_usage=include_usage)
    # A client that closes its stream early wants the generation stopped, as with OpenAI.
    stack.push_async_callback(_cancel_unless_ended, client, writer, key)
    return StreamingResponse(
        _chunks(stack, writer, first, batches),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


_cancels: set[asyncio.Task[None]] = set()


async def _cancel_unless_ended(client: CoreClient, writer: ChunkWriter, key: str) -> None:
    if writer.ended:
        return
    # In the background: this runs while the response is being torn down.
    task = asyncio.create_task(_cancel(client, writer.job_id, key))
    _cancels.add(task)
    task.add_done_callback(_cancels.discard)


async def _cancel(client: CoreClient, job_id: str, key: str) -> None:
    try:
        await client.cancel_job(job_id, key=key)
    except PatchbayError as exc:
        logger.warning("could not cancel job %s after its client left: %s", job_id, exc.message)


async def _first_output_unless_gone(
    request: Request, batches: AsyncIterator[list[JobEvent]]
) -> list[JobEvent] | None:
    """`_first_output`, or None if the client disconnects first."""
    first = asyncio.ensure_future(_first_output(batches))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({first, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (first, gone):
            task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await gone
    if first.done() and not first.cancelled():
        return first.result()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    return None


async def _disconnected(request: Request) -> None:
    """Return once the client has disconnected (its body is read: nothing else comes)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _first_output(batches: AsyncIterator[list[JobEvent]]) -> list[JobEvent]:
    """The events from the first token or the end on; a failure before any token is raised."""
    async for batch in batches:
        ready = [event for event in batch if event.type == "running" or event.terminal]
        if ready:
            if ready[0].type in ("failed", "cancelled"):
                raise _failure(ready[0])
            return ready
    raise PatchbayError("the job ended without an outcome")


def _encode(writer: ChunkWriter, batch: list[JobEvent]) -> tuple[bytes, bool]:
    """The chunks for a batch of events, and whether the stream ended with it."""
    out = []
    for event in batch:
        if event.type == "running" and event.delta:
            writer.sent_content = True
            out.append(writer.delta({"content": event.delta}))
        elif event.type == "restarted" and writer.sent_content:
            # Another worker starts the answer again; what the client has cannot be taken back.
            message = "the generation restarted on another worker; send the request again"
            out.append(writer.error(message, "generation_restarted"))
            return b"".join(out), True
        elif event.type == "done":
            out.append(writer.end(event.finish_reason, event.usage))
            return b"".join(out), True
        elif event.terminal:
            failure = _failure(event)
            out.append(writer.error(failure.message, failure.code))
            return b"".join(out), True
    return b"".join(out), False


async def _chunks(
    stack: AsyncExitStack,
    writer: ChunkWriter,
    first: list[JobEvent],
    batches: AsyncIterator[list[JobEvent]],
) -> AsyncIterator[bytes]:
    async with stack:
        data, ended = _encode(writer, first)
        yield writer.delta({"role": "assistant", "content": ""}) + data
        while not ended:
            try:
                batch = await anext(batches, None)
            except PatchbayError as exc:
                yield writer.error(exc.message, exc.code)
                return
            if batch is None:
                yield writer.error("the core ended the stream early", "core_unavailable")
                return
            data, ended = _encode(writer, batch)
            if data:
                yield data


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    models = await _client(request).list_models(key=_key(request))
    return {"object": "list", "data": [_card(m) for m in models]}


@router.get("/models/{model_id:path}")
async def read_model(model_id: str, request: Request) -> dict[str, Any]:
    for m in await _client(request).list_models(key=_key(request)):
        if m.name == model_id:
            return _card(m)
    raise ModelNotFound(f"the model {model_id!r} does not exist")


def _card(model: ModelRead) -> dict[str, Any]:
    return {
        "id": model.name,
        "object": "model",
        "created": int(model.created_at.timestamp()),
        "owned_by": model.provider,
    }
