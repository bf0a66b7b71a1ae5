"""The status of every module: heartbeats in, the whole picture out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from patchbay import __version__
from patchbay.api.deps import AdminUser, HubDep
from patchbay.errors import AuthenticationFailed
from patchbay.schemas.status import Heartbeat, StatusRead
from patchbay.tokens import valid_module_token

router = APIRouter(prefix="/v1/status", tags=["status"])


@router.post("/heartbeat", status_code=204)
async def heartbeat(
    beat: Heartbeat,
    hub: HubDep,
    token: Annotated[str | None, Header(alias="X-Patchbay-Module-Token")] = None,
) -> None:
    """A module reports that it is alive (signed with the installation's module token)."""
    if not valid_module_token(hub.secret, token):
        raise AuthenticationFailed("heartbeats need this installation's module token")
    hub.status.record(beat)


@router.get("", response_model=StatusRead)
async def status(hub: HubDep, _admin: AdminUser) -> StatusRead:
    """Every module, up or down, with its pid, URL and the age of its last heartbeat."""
    return StatusRead(
        version=__version__,
        modules=hub.status.modules(hub.settings.core.base_url),
        queue_depth=hub.queue.depth(),
    )
