"""Helpers: they register and heartbeat with the helper key; people list them and call them;
admins switch them off, limit who may use them, or remove them."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Request, Response

from patchbay.api.deps import CurrentUser, HubDep, bearer_key
from patchbay.api.peers import client_host
from patchbay.core.hub import Hub
from patchbay.errors import InvalidJson, PayloadTooLarge
from patchbay.schemas.helpers import (
    HELPER_KEY_HEADER,
    HelperManifest,
    HelperRead,
    HelperUpdate,
    McpServerAdd,
    ToText,
)

router = APIRouter(prefix="/v1", tags=["helpers"])

HelperKey = Annotated[str | None, Header(alias=HELPER_KEY_HEADER)]


def peer_of(request: Request, hub: Hub) -> str | None:
    """The address a helper calls from (through the proxies the core trusts): a helper's name
    belongs to its host."""
    return client_host(request, hub.settings.core.trusted_proxies)


@router.post("/helpers", response_model=HelperRead, status_code=201)
async def register(
    manifest: HelperManifest, request: Request, hub: HubDep, key: HelperKey = None
) -> HelperRead:
    """A helper registers (again) with its manifest; needs the helper registration key."""
    hub.helpers.check_key(key)
    return await hub.helpers.register(manifest, peer=peer_of(request, hub))


@router.post("/helpers/mcp", response_model=HelperRead, status_code=201)
async def add_mcp_server(data: McpServerAdd, hub: HubDep, user: CurrentUser) -> HelperRead:
    """Admins: register an MCP server (streamable HTTP) by URL; its tools become capabilities."""
    return await hub.helpers.add_mcp(user, data.name, data.url)


@router.post("/helpers/{name}/heartbeat", status_code=204)
async def heartbeat(name: str, request: Request, hub: HubDep, key: HelperKey = None) -> None:
    """A helper says it is alive; 404 means: register again."""
    hub.helpers.check_key(key)
    await hub.helpers.heartbeat(name, peer=peer_of(request, hub))


@router.get("/helpers", response_model=list[HelperRead])
async def list_helpers(hub: HubDep, user: CurrentUser) -> list[HelperRead]:
    """Every helper with its capabilities and schemas, health, latency and error counts."""
    return await hub.helpers.list_helpers(viewer=user)


@router.get("/helpers/{name}", response_model=HelperRead)
async def read_helper(name: str, hub: HubDep, user: CurrentUser) -> HelperRead:
    return await hub.helpers.get(name, viewer=user)


@router.patch("/helpers/{name}", response_model=HelperRead)
async def update_helper(
    name: str, data: HelperUpdate, hub: HubDep, user: CurrentUser
) -> HelperRead:
    """Admins: switch a helper off or on, or limit it to some users or roles."""
    return await hub.helpers.update(user, name, data)


@router.delete("/helpers/{name}", status_code=204)
async def remove_helper(name: str, request: Request, hub: HubDep, key: HelperKey = None) -> None:
    """A helper leaving (with the helper key), or an admin removing it."""
    if key is not None:
        hub.helpers.check_key(key)
        await hub.helpers.leave(name, peer=peer_of(request, hub))
        return
    user = await hub.auth.authenticate(bearer_key(request))
    await hub.helpers.remove(user, name)


@router.post("/helpers/{name}/capabilities/{capability}")
async def call_capability(
    name: str, capability: str, request: Request, hub: HubDep, user: CurrentUser
) -> Response:
    """Call a helper's tool through the core: arguments in, result out, both checked."""
    try:
        arguments = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"the arguments are not JSON: {exc}") from exc
    result = await hub.helpers.call(user, name, capability, arguments)
    return Response(orjson.dumps(result), media_type="application/json")


@router.post("/convert", response_model=ToText)
async def convert(request: Request, hub: HubDep, user: CurrentUser) -> ToText:
    """The text of a file (the body, with its media type as Content-Type), by a to-text helper."""
    data = await request.body()
    if len(data) > hub.settings.helpers.max_request_bytes:
        raise PayloadTooLarge("the file is too large")
    media_type = request.headers.get("content-type", "application/octet-stream")
    return await hub.helpers.to_text(user, media_type, data)
