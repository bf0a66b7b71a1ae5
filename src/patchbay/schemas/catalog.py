"""Providers (where models run) and models (what clients ask for by name) on the wire."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, SecretStr

ProviderKind = Literal["local", "openai", "llm"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$"
# The option naming the media types an OpenAI-compatible model reads itself (images, audio):
# files of those types go to it as they are, not as the text a helper makes of them.
ATTACHMENT_TYPES = "attachment_types"
MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


def _check_options(options: dict[str, object]) -> dict[str, object]:
    """`attachment_types`, when given, as a sorted list of lower-case media types."""
    types = options.get(ATTACHMENT_TYPES)
    if types is None:
        return options
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise ValueError(
            f'{ATTACHMENT_TYPES} is a list of media types, such as ["image/png", "image/jpeg"]'
        )
    kept = sorted({t.strip().lower() for t in types})
    for media_type in kept:
        if not MEDIA_TYPE.match(media_type):
            raise ValueError(f"{ATTACHMENT_TYPES}: {media_type!r} is not a media type")
    return {**options, ATTACHMENT_TYPES: kept}


# Default generation options, and `attachment_types`.
ModelOptions = Annotated[dict[str, object], AfterValidator(_check_options)]


class ProviderCreate(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)
    kind: ProviderKind
    api_base: str | None = None  # `openai`: the upstream's base URL, ending in /v1
    api_key: SecretStr | None = None  # stored encrypted, never returned
    api_key_env: str | None = None  # or: the environment variable that holds it
    options: ModelOptions = {}  # every model of the provider starts from these


class ProviderUpdate(BaseModel):
    api_base: str | None = None
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    options: ModelOptions | None = None


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
    options: ModelOptions = {}
    is_default: bool = False


class ModelUpdate(BaseModel):
    upstream_model: str | None = None
    options: ModelOptions | None = None
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
