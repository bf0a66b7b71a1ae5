"""Answers owed to channels.

A channel that sends the answer itself, later (an email reply), gives its turn a `reply`: what it
needs to send that answer (the mail's headers). The core keeps the answer owed to the channel
until the channel says it was sent, so a channel that restarted, or whose relay was away, finds
the answers it still owes (`GET /v1/deliveries/owed`) and sends each one once it can. Any
delivery, owed or not, names the turn that took it (`GET /v1/deliveries/turn`).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from patchbay.schemas.senders import CHANNEL_NAME
from patchbay.schemas.turns import MAX_DELIVERY_ID


class OwedAnswer(BaseModel):
    """An answer a channel has yet to send: its turn's ids, the channel's `reply`, and which
    process holds it until when."""

    channel: str
    delivery_id: str
    user_id: str
    chat_id: str
    job_id: str
    user_message_id: str
    assistant_message_id: str
    model: str
    reply: dict[str, object]
    created_at: datetime
    held_by: str | None = None
    held_until: datetime | None = None


class DeliveryRead(BaseModel):
    """The turn that took one of a user's deliveries: a channel process that did not start it (or
    no longer remembers it, after a restart) follows its job from here."""

    channel: str
    delivery_id: str
    chat_id: str
    user_message_id: str
    job_id: str
    owed: bool  # its answer is owed to the channel (a `reply`), not yet said to be sent


class DeliveryKey(BaseModel):
    user_id: str = Field(min_length=1, max_length=26)
    delivery_id: str = Field(min_length=1, max_length=MAX_DELIVERY_ID)


class HoldOwed(BaseModel):
    """A channel process renews its hold on the answers it is sending and takes up to `limit`
    more, and those of `take`: those no process holds, or whose holder let its lease run out, or
    its own from before a restart."""

    channel: str = Field(pattern=CHANNEL_NAME)
    holder: str = Field(min_length=1, max_length=200)  # stable across the process's restarts
    lease_s: float = Field(ge=1, le=86_400)
    limit: int = Field(default=100, ge=0, le=500)
    renew: list[DeliveryKey] = Field(default=[], max_length=10_000)
    # Taken if no other process holds them (their first delivery came again to this one).
    take: list[DeliveryKey] = Field(default=[], max_length=100)


class AnswerSent(BaseModel):
    """A channel says it sent the answer to one of its deliveries."""

    channel: str = Field(pattern=CHANNEL_NAME)
    user_id: str = Field(min_length=1, max_length=26)
    delivery_id: str = Field(min_length=1, max_length=MAX_DELIVERY_ID)
