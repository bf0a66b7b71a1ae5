"""Chats and their messages on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

MessageRole = Literal["system", "user", "assistant"]
MessageStatus = Literal["complete", "queued", "streaming", "failed", "cancelled"]


class ChatRead(BaseModel):
    id: str
    number: int | None  # the short id seed 003's clients use
    owner_id: str
    members: list[str] = []  # ids of the users besides the owner who may use the chat
    title: str | None
    channel: str
    thread: str | None
    model: str | None
    created_at: datetime
    updated_at: datetime


class ChatCreate(BaseModel):
    title: str | None = Field(default=None, max_length=500)
    members: list[str] = Field(default=[], max_length=1000)  # user names or ids
    model: str | None = None


class ChatUpdate(BaseModel):
    title: str | None = Field(default=None, max_length=500)
    model: str | None = None
    members: list[str] | None = Field(default=None, max_length=1000)  # replaces the members
    # Show the branch through this message (its newest descendants below it).
    current_message_id: str | None = None


class Usage(BaseModel):
    input_tokens: int | None = None
    output_tokens: int | None = None


class Timings(BaseModel):
    ttft_ms: float | None = None  # time to first token
    duration_ms: float | None = None


class AttachmentRead(BaseModel):
    """A file that came with a message: where it is kept, and the text a helper made of it."""

    id: str  # the sha256 of its bytes
    media_type: str
    filename: str | None
    size: int
    text: str  # empty when the model read the file itself and no helper was asked


class MessageRead(BaseModel):
    id: str
    number: int | None
    chat_id: str
    parent_id: str | None
    author_id: str | None
    role: MessageRole
    content: str
    status: MessageStatus
    model: str | None
    usage: Usage
    timings: Timings
    error: str | None
    created_at: datetime
    # In a loaded branch: this message and its alternatives (regenerated answers), oldest first.
    sibling_ids: list[str] = []
    attachments: list[AttachmentRead] = []
    # The helpers' tools the model called for this answer: arguments, result or error, duration.
    tool_calls: list[dict[str, object]] = []
    # The assistant template that made this answer, if one did (regenerating it uses it again).
    assistant: dict[str, object] | None = None
