"""Module heartbeats and the core's status page on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

ModuleKind = Literal["channel", "helper", "worker"]


class Heartbeat(BaseModel):
    module: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    kind: ModuleKind
    url: str | None = None
    pid: int
    started_at: datetime


class ModuleStatus(BaseModel):
    name: str
    kind: ModuleKind | Literal["core"]
    state: Literal["up", "down"]
    url: str | None
    pid: int | None
    started_at: datetime | None
    last_seen_s: float | None  # seconds since its last heartbeat


class StatusRead(BaseModel):
    version: str
    modules: list[ModuleStatus]
    queue_depth: int
