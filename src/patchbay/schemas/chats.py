"""Chats and their messages on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

MessageRole = Literal["system", "user", "assistant"]
MessageStatus = Literal["complete", "queued", "streaming", "failed", "cancelled"]


class ChatRead(BaseModel):
    id: str
    title: str | None
    channel: str
    thread: str | None
    model: str | None
    created_at: datetime
    updated_at: datetime


class ChatUpdate(BaseModel):
    title: str | None = Field(default=None, max_length=500)


class Usage(BaseModel):
    input_tokens: int | None = None
    output_tokens: int | None = None


class Timings(BaseModel):
    ttft_ms: float | None = None  # time to first token
    duration_ms: float | None = None


class MessageRead(BaseModel):
    id: str
    chat_id: str
    parent_id: str | None
    role: MessageRole
    content: str
    status: MessageStatus
    model: str | None
    usage: Usage
    timings: Timings
    error: str | None
    created_at: datetime
