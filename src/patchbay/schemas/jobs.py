"""Jobs and the events a running job publishes, each with a sequence number for resume."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from patchbay.schemas.chats import Timings, Usage

# `restarted`: another worker took the job over and its answer starts again from the beginning
EventType = Literal["queued", "running", "restarted", "done", "failed", "cancelled"]
# `waiting`: stored behind its chat's unfinished answer (see `TurnCreate.queue_behind`)
JobStatus = Literal["waiting", "queued", "running", "done", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"done", "failed", "cancelled"})


class ErrorInfo(BaseModel):
    code: str
    message: str
    retryable: bool = False


class JobEvent(BaseModel):
    job_id: str
    seq: int
    type: EventType
    delta: str | None = None  # running: the new text
    content: str | None = None  # done, failed, cancelled: the whole answer so far
    finish_reason: str | None = None
    usage: Usage | None = None
    timings: Timings | None = None
    error: ErrorInfo | None = None
    model: str | None = None
    position: int | None = None  # queued: jobs ahead of this one, when known

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL


class JobRead(BaseModel):
    id: str
    chat_id: str
    message_id: str
    model: str
    status: JobStatus
    error: str | None
