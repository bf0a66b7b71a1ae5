"""Helpers on the wire: the manifest a helper serves and registers, and what the core reports.

The HTTP contract a helper speaks, in any language:
  GET  /manifest                 -> HelperManifest
  GET  /health                   -> {"status": "ok"}
  POST /capabilities/{name}      -> a `tool` takes and returns JSON matching its schemas; a `to-text`
                                    capability takes the raw bytes (Content-Type: their media type)
                                    and returns ToText.
A helper registers with the core (`POST /v1/helpers`, header `X-Patchbay-Helper-Key`), then
heartbeats (`POST /v1/helpers/{name}/heartbeat`); a 404 there means the core forgot it (it
restarted with another database): register again. On shutdown: `DELETE /v1/helpers/{name}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

HELPER_KEY_HEADER = "X-Patchbay-Helper-Key"
NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"

CapabilityKind = Literal["tool", "to-text"]


class Capability(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME)
    description: str = Field(max_length=4000)
    kind: CapabilityKind = "tool"
    input_schema: dict[str, object] = {}  # JSON Schema; to-text: unused (the body is the file)
    output_schema: dict[str, object] = {}  # JSON Schema
    media_types: list[str] = Field(
        default=[], max_length=100
    )  # to-text: e.g. "application/pdf", "image/*"
    idempotent: bool = False  # safe to call again after a failure
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    remote_name: str | None = Field(default=None, max_length=200)  # MCP: the tool's own name


class HelperManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME)
    version: str = Field(default="0", max_length=100)
    description: str = Field(default="", max_length=4000)
    base_url: str = Field(max_length=2000)  # where the core reaches it, e.g. http://127.0.0.1:8801
    protocol: Literal["http", "mcp"] = "http"  # mcp: an MCP server (streamable HTTP) at base_url
    capabilities: list[Capability] = Field(min_length=1, max_length=200)


class ToText(BaseModel):
    """What a `to-text` capability returns."""

    text: str
    format: Literal["markdown", "plain"] = "plain"
    pages: int | None = None  # documents
    duration_s: float | None = None  # audio and video


class HelperStats(BaseModel):
    calls: int = 0
    errors: int = 0
    mean_latency_ms: float | None = None


class HelperRead(BaseModel):
    name: str
    version: str
    description: str
    base_url: str
    protocol: Literal["http", "mcp"] = "http"
    capabilities: list[Capability]
    enabled: bool
    state: Literal["up", "down"]
    last_seen: datetime | None
    registered_at: datetime
    stats: HelperStats
    allowed_roles: list[str] | None  # None: everyone
    allowed_users: list[str] | None


class McpServerAdd(BaseModel):
    """An admin registers an MCP server (streamable HTTP) as a helper: its tools become tools."""

    name: str = Field(pattern=NAME)
    url: str = Field(max_length=2000)  # e.g. http://127.0.0.1:9000/mcp


class HelperUpdate(BaseModel):
    """What an admin may change: switch a helper off, or limit who may use it."""

    enabled: bool | None = None
    allowed_roles: list[str] | None = None
    allowed_users: list[str] | None = None
