"""Users and their API keys on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

Role = Literal["admin", "user"]


Profile = dict[str, object] | str  # free-form: structured fields or a line of text
NAME_PATTERN = r"^[^\s/]{1,200}$"


class UserCreate(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)
    role: Role = "user"
    profile: Profile = {}


class UserUpdate(BaseModel):
    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    role: Role | None = None
    profile: Profile | None = None
    instruction_recording: bool | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> UserUpdate:
        """A field is changed or left out: none can be emptied."""
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)}: null; leave a field out to keep it")
        return self


class UserRead(BaseModel):
    id: str
    number: int | None  # the short id seed 003's clients use
    name: str
    role: Role
    profile: Profile
    instruction_recording: bool
    created_at: datetime


class InstructionRecord(BaseModel):
    """One instruction a user sent while recording was on."""

    id: str
    user_id: str
    type: str | None
    transport: str
    payload: object
    status: str
    error_code: str | None
    latency_ms: float
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
