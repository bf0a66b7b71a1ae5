"""Providers (where models run) and models (what clients ask for by name) on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

ProviderKind = Literal["local", "openai", "llm"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$"


class ProviderCreate(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)
    kind: ProviderKind
    api_base: str | None = None  # `openai`: the upstream's base URL, ending in /v1
    api_key: SecretStr | None = None  # stored encrypted, never returned
    api_key_env: str | None = None  # or: the environment variable that holds it
    options: dict[str, object] = {}


class ProviderUpdate(BaseModel):
    api_base: str | None = None
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    options: dict[str, object] | None = None


class ProviderRead(BaseModel):
    id: str
    name: str
    kind: ProviderKind
    api_base: str | None
    has_api_key: bool
    api_key_env: str | None
    options: dict[str, object]
    created_at: datetime


class ModelCreate(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)  # what clients ask for
    provider: str  # provider name
    upstream_model: str | None = None  # the provider's id for it; default: `name`
    options: dict[str, object] = {}  # default generation options
    is_default: bool = False


class ModelUpdate(BaseModel):
    upstream_model: str | None = None
    options: dict[str, object] | None = None
    is_default: bool | None = None


class ModelRead(BaseModel):
    id: str
    name: str
    provider: str
    provider_kind: ProviderKind
    upstream_model: str
    options: dict[str, object]
    is_default: bool
    created_at: datetime
