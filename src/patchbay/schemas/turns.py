"""A turn: what a channel sends the core when a person says something, and what comes back."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from patchbay.schemas.chats import MessageRole
from patchbay.schemas.jobs import JobEvent

MAX_TEXT = 1_000_000


class MessageIn(BaseModel):
    role: MessageRole
    content: str = Field(max_length=MAX_TEXT)


class GenerationOptions(BaseModel):
    """Sampling options passed through to the model; `None` means the model's default."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: list[str] | None = Field(default=None, max_length=4)
    seed: int | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)


class TurnCreate(BaseModel):
    """A person's message, from any channel.

    `history`, when given, is the conversation the client holds (OpenAI style); a stored chat whose
    messages match it is continued instead of storing it again.
    """

    channel: str = Field(default="api", max_length=100)
    thread: str | None = Field(default=None, max_length=500)
    chat_id: str | None = None
    text: str = Field(max_length=MAX_TEXT)
    history: list[MessageIn] | None = Field(default=None, max_length=10_000)
    model: str | None = None
    options: GenerationOptions = GenerationOptions()
    # Whether anyone wants the answer token by token. When not, the model is asked for the whole
    # answer at once, which costs the upstream and the core far less; events still arrive.
    stream: bool = True
    metadata: dict[str, object] = {}


class Regenerate(BaseModel):
    """Answer a question again; the new answer becomes a sibling of the earlier ones."""

    model: str | None = None  # default: the model of the answer being replaced
    options: GenerationOptions = GenerationOptions()
    stream: bool = True


class TurnRead(BaseModel):
    chat_id: str
    job_id: str
    user_message_id: str
    assistant_message_id: str
    model: str


class TurnResult(BaseModel):
    turn: TurnRead
    outcome: JobEvent  # the job's terminal event: done, failed or cancelled
