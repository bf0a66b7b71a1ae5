"""Senders: who writes to a channel (an email address, a phone number), as a patchbay user.

A channel asks the core to resolve each sender under its policy: `open` (a new sender becomes a
user), `pairing` (an unknown sender gets a one-time code an admin approves) or `allowlist` (only
senders an admin linked). Identities link a channel address to a user; one person may have many.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from patchbay.schemas.users import UserRead

SenderPolicy = Literal["open", "pairing", "allowlist"]
MODULE_TOKEN_HEADER = "X-Patchbay-Module-Token"  # noqa: S105 - a header's name, not a secret
AS_USER_HEADER = "X-Patchbay-As-User"  # with the module token: act as this user
CHANNEL_NAME = r"^[a-z0-9][a-z0-9_-]{0,99}$"  # how a channel is named, wherever it is named


class SenderResolve(BaseModel):
    channel: str = Field(pattern=CHANNEL_NAME)
    address: str = Field(min_length=1, max_length=500)
    display_name: str | None = Field(default=None, max_length=200)
    policy: SenderPolicy = "pairing"


class SenderResolved(BaseModel):
    status: Literal["known", "pairing", "refused"]
    user: UserRead | None = None  # known
    code: str | None = None  # pairing: tell the sender, an admin approves it
    expires_at: datetime | None = None
    new_code: bool = False  # pairing: the code was made just now (say it once)
    reason: str | None = None  # refused


class PairingRead(BaseModel):
    code: str
    channel: str
    address: str
    display_name: str | None
    created_at: datetime
    expires_at: datetime


class PairingApprove(BaseModel):
    user: str | None = None  # link to this existing user (name, id or number); default: a new one


class IdentityCreate(BaseModel):
    user: str  # name, id or number
    channel: str = Field(pattern=CHANNEL_NAME)
    address: str = Field(min_length=1, max_length=500)


class IdentityRead(BaseModel):
    id: str
    user_id: str
    channel: str
    address: str
    created_at: datetime
