"""A turn: what a channel sends the core when a person says something, and what comes back."""

from __future__ import annotations

import orjson
from pydantic import BaseModel, Field, field_validator, model_validator

from patchbay.schemas.assistants import AssistantTemplate
from patchbay.schemas.chats import MessageRole
from patchbay.schemas.jobs import JobEvent
from patchbay.schemas.options import MAX_TEXT, GenerationOptions

MAX_DELIVERY_ID = 300
MAX_CHANNEL = 100
MAX_THREAD = 500
MAX_REPLY_BYTES = 16_000
# A channel's regenerates are kept among its deliveries under its name and this (`web:regenerate`),
# apart from its messages, so that an id one of them was given is never taken for the other's.
REGENERATES = ":regenerate"


def regenerates_of(channel: str) -> str:
    """The name a channel's regenerates are kept under among deliveries."""
    return channel + REGENERATES


class AttachmentIn(BaseModel):
    """A file that comes with a turn: base64 (or a `data:` URL), turned into text by a helper."""

    media_type: str | None = Field(default=None, max_length=200)  # default: from the data URL
    data: str = Field(max_length=400_000_000)
    filename: str | None = Field(default=None, max_length=500)


class MessageIn(BaseModel):
    """A message of a history the client holds, with its files (kept and read only when the
    history is stored as a new chat: a stored chat it continues has its own)."""

    role: MessageRole
    content: str = Field(max_length=MAX_TEXT)
    attachments: list[AttachmentIn] = Field(default=[], max_length=20)


class TurnCreate(BaseModel):
    """A person's message, from any channel.

    `history`, when given, is the conversation the client holds (OpenAI style); a stored chat whose
    messages match it is continued instead of storing it again. `delivery_id` is the channel's id
    for the incoming message (an email's Message-ID, a Twilio MessageSid): a turn whose delivery
    the core already took is refused with `duplicate_delivery` (409), so a redelivery is not
    answered twice. With it, `reply` (what the channel needs to send the answer itself: an
    email's headers) keeps the answer owed to the channel until it says it sent it (see
    `schemas.deliveries`).
    """

    channel: str = Field(default="api", max_length=MAX_CHANNEL)
    thread: str | None = Field(default=None, max_length=MAX_THREAD)
    chat_id: str | None = None
    text: str = Field(max_length=MAX_TEXT)
    history: list[MessageIn] | None = Field(default=None, max_length=10_000)
    model: str | None = None  # or `assistant:NAME` for a stored assistant
    options: GenerationOptions = GenerationOptions()
    # An assistant template (seed 002) to answer with, or the name of a stored one.
    assistant: AssistantTemplate | None = None
    assistant_name: str | None = Field(default=None, max_length=200)
    attachments: list[AttachmentIn] = Field(default=[], max_length=20)
    # Whether anyone wants the answer token by token. When not, the model is asked for the whole
    # answer at once, which costs the upstream and the core far less; events still arrive.
    stream: bool = True
    metadata: dict[str, object] = {}
    delivery_id: str | None = Field(default=None, min_length=1, max_length=MAX_DELIVERY_ID)
    reply: dict[str, object] | None = None
    # The channel process that sends the answer (see `schemas.deliveries.HoldOwed`): it holds it
    # for five minutes (`store.deliveries.OWED_HOLD`), renewed as it sweeps, so no other process
    # sends it meanwhile.
    reply_holder: str | None = Field(default=None, min_length=1, max_length=200)
    # When the chat's latest answer is still coming: store this turn now, and start its answer
    # (with that one in its history) once that one has ended, rather than beside it. A chat
    # channel's next message is then kept by the core at once, not in the channel's memory.
    queue_behind: bool = False

    @field_validator("channel")
    @classmethod
    def _not_regenerates(cls, channel: str) -> str:
        if channel.endswith(REGENERATES):
            raise ValueError(f"a channel's name does not end in {REGENERATES!r}")
        return channel

    @field_validator("reply")
    @classmethod
    def _small_reply(cls, reply: dict[str, object] | None) -> dict[str, object] | None:
        if reply is not None and len(orjson.dumps(reply)) > MAX_REPLY_BYTES:
            raise ValueError(f"is over {MAX_REPLY_BYTES} bytes as JSON")
        return reply

    @model_validator(mode="after")
    def _reply_needs_delivery(self) -> TurnCreate:
        if self.reply is not None and self.delivery_id is None:
            raise ValueError("`reply` needs a `delivery_id`: the answer is owed for a delivery")
        return self


class Regenerate(BaseModel):
    """Answer a question again; the new answer becomes a sibling of the earlier ones.

    `delivery_id` is the channel's id for this request, as a turn's is for a message: the same id
    again (a request sent again after its answer was lost) is refused with `duplicate_delivery`
    (409) naming the job the first one started, so the question is answered again once. A
    channel's ids for regenerates are kept apart from its ids for messages: one never takes the
    other for itself.
    """

    channel: str = Field(default="api", max_length=MAX_CHANNEL - len(REGENERATES))
    model: str | None = None  # default: the model of the answer being replaced
    options: GenerationOptions = GenerationOptions()
    stream: bool = True
    delivery_id: str | None = Field(default=None, min_length=1, max_length=MAX_DELIVERY_ID)


class TurnRead(BaseModel):
    chat_id: str
    job_id: str
    user_message_id: str
    assistant_message_id: str
    model: str


class TurnResult(BaseModel):
    turn: TurnRead
    outcome: JobEvent  # the job's terminal event: done, failed or cancelled
