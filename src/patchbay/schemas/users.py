"""Users and their API keys on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Role = Literal["admin", "user"]


class UserCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: Role = "user"
    profile: dict[str, object] = {}


class UserUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    profile: dict[str, object] | None = None


class UserRead(BaseModel):
    id: str
    name: str
    role: Role
    profile: dict[str, object]
    created_at: datetime


class ApiKeyCreate(BaseModel):
    name: str = Field(default="default", min_length=1, max_length=200)


class ApiKeyRead(BaseModel):
    id: str
    user_id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyIssued(ApiKeyRead):
    key: str  # shown once, never stored
