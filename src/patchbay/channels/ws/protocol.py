"""Seed 002's frames: what a client may send (validated models) and what the channel sends back.

Client frames: `auth`, `add`, `listen`, `cancel`. Server frames: `resp_auth`, `resp_add`, a job's
updates (`pending`, `running`, `done`, `failed`, `cancelled`, `restarted`, each with its `seq`) and
`failed` for a frame the channel could not act on. Every frame is one JSON object in a text frame.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, Field, StrictInt, StrictStr, TypeAdapter, ValidationError

from patchbay.schemas.jobs import JobEvent
from patchbay.schemas.options import MAX_TEXT
from patchbay.schemas.turns import MessageIn, TurnCreate

Frame = dict[str, object]
ClientId = Annotated[StrictStr, Field(max_length=200)] | StrictInt
JobId = Annotated[str, Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")]
CHANNEL = "ws"


class AuthFrame(BaseModel):
    type: Literal["auth"]
    api_key: str = Field(min_length=1, max_length=500)


class AddFrame(BaseModel):
    type: Literal["add"]
    id: ClientId
    query: str = Field(max_length=MAX_TEXT)
    assistant: dict[str, Any] | None = None  # seed 002's template; the core validates it
    assistant_name: str | None = None
    history: list[MessageIn] | None = Field(default=None, max_length=10_000)
    model: str | None = None  # a plain turn's model, when there is no template


class ListenFrame(BaseModel):
    type: Literal["listen"]
    job_id: JobId
    after: int | None = Field(default=None, ge=0)  # the last `seq` seen: resume after it


class CancelFrame(BaseModel):
    type: Literal["cancel"]
    job_id: JobId


ClientFrame = AuthFrame | AddFrame | ListenFrame | CancelFrame
_FRAMES: TypeAdapter[ClientFrame] = TypeAdapter(Annotated[ClientFrame, Field(discriminator="type")])
KINDS = ("auth", "add", "listen", "cancel")
# Job event type -> update frame type (seed 002 calls a queued job `pending`).
_UPDATES = {
    "queued": "pending",
    "running": "running",
    "restarted": "restarted",
    "done": "done",
    "failed": "failed",
    "cancelled": "cancelled",
}


ECHO_MAX = 200  # characters of a client's own value a `failed` frame repeats


class BadFrame(Exception):
    """A frame the channel cannot act on; answered with a `failed` frame naming what is wrong."""

    def __init__(
        self, message: str, *, job_id: str | None = None, client_id: ClientId | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.job_id = job_id
        self.client_id = client_id


def parse(text: str) -> ClientFrame:
    """The client frame in `text`; raises `BadFrame` saying what to send instead."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadFrame("a frame is one JSON object; this one is not valid JSON") from exc
    if not isinstance(data, dict):
        raise BadFrame('a frame is a JSON object with a "type", e.g. {"type": "listen", …}')
    # What a `failed` frame echoes back is kept short: a client that sends huge frames and reads
    # none would otherwise fill its queue of frames to send with copies of them.
    job_id = data.get("job_id")
    if not isinstance(job_id, str) or len(job_id) > ECHO_MAX:
        job_id = None
    client_id = data.get("id")
    if (
        isinstance(client_id, bool)
        or not isinstance(client_id, str | int)
        or len(str(client_id)) > ECHO_MAX
    ):
        client_id = None
    kind = data.get("type")
    if kind not in KINDS:
        shown = repr(kind)
        shown = shown if len(shown) <= ECHO_MAX else shown[:ECHO_MAX] + "…"
        raise BadFrame(
            f"unknown frame type {shown}; send one of {', '.join(KINDS)}",
            job_id=job_id,
            client_id=client_id,
        )
    try:
        return _FRAMES.validate_python(data)
    except ValidationError as exc:
        raise BadFrame(f"{kind}: {describe(exc)}", job_id=job_id, client_id=client_id) from exc


def describe(exc: ValidationError) -> str:
    """The first problem of a validation error, as `field: what is wrong`."""
    first = exc.errors()[0]
    loc = [str(part) for part in first["loc"] if not _union_tag(str(part))]
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "string_pattern_mismatch" and loc[-1:] == ["job_id"]:
        message = "not a job id (the `job_id` a `resp_add` gave)"
    return f"{'.'.join(loc) or 'frame'}: {message}"


def _union_tag(part: str) -> bool:
    """Whether a location part is a tag pydantic adds for a union (frame type, model, kind)."""
    return part in KINDS or part[:1].isupper() or "-" in part


def to_turn(frame: AddFrame) -> TurnCreate:
    """The turn an `add` asks for; raises `BadFrame` when it is not one the core can take."""
    body: dict[str, object] = {
        "channel": CHANNEL,
        "text": frame.query,
        "history": frame.history,
        "model": frame.model,
        "metadata": {"client_id": frame.id},
    }
    if frame.assistant is not None:
        body["assistant"] = frame.assistant
    if frame.assistant_name is not None:
        body["assistant_name"] = frame.assistant_name
    try:
        return TurnCreate.model_validate(body)
    except ValidationError as exc:
        raise BadFrame(f"add: {describe(exc)}", client_id=frame.id) from exc


def dumps(frame: Frame) -> str:
    return orjson.dumps(frame).decode()


def update(event: JobEvent) -> Frame | None:
    """The update frame for a job event, or None for an event type clients are not told about."""
    kind = _UPDATES.get(event.type)
    if kind is None:
        return None
    frame: Frame = {"type": kind, "job_id": event.job_id, "seq": event.seq}
    if kind == "pending":
        frame["position"] = event.position
    elif kind == "running":
        frame["message"] = event.delta or ""
    elif kind == "failed":
        error = event.error
        frame["message"] = error.message if error else "the job failed"
        frame["code"] = error.code if error else "job_failed"
        frame["retryable"] = bool(error and error.retryable)
    return frame


def failed(
    message: str,
    *,
    job_id: str | None = None,
    client_id: ClientId | None = None,
    retryable: bool = False,
) -> Frame:
    """A `failed` frame for something the channel could not do (not a job's own failure)."""
    frame: Frame = {"type": "failed"}
    if job_id is not None:
        frame["job_id"] = job_id
    if client_id is not None:
        frame["id"] = client_id
    frame["message"] = message
    if retryable:
        frame["retryable"] = True
    return frame


def bad(exc: BadFrame) -> Frame:
    return failed(exc.message, job_id=exc.job_id, client_id=exc.client_id)
