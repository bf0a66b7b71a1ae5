"""Job events as Server-Sent Events, numbered so a client can resume with `Last-Event-ID`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request

from patchbay.schemas.jobs import JobEvent

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MAX_SEQ_DIGITS = 18  # a `Last-Event-ID` longer than this names no event: ignored, as garbage is


def encode(event: JobEvent) -> bytes:
    data = event.model_dump_json(exclude_none=True)
    return f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n".encode()


async def encode_all(batches: AsyncIterator[list[JobEvent]]) -> AsyncIterator[bytes]:
    async for batch in batches:
        yield b"".join(encode(event) for event in batch)


def resume_point(request: Request, after: int | None) -> int:
    """The last sequence number the client saw: `Last-Event-ID`, else `?after=`, else 0."""
    header = request.headers.get("last-event-id", "").strip()
    if header.isascii() and header.isdigit() and len(header) <= MAX_SEQ_DIGITS:
        return int(header)
    return after or 0
