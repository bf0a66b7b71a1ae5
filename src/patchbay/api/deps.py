"""Dependencies shared by the routes: the hub and the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from patchbay.core.hub import Hub
from patchbay.core.users import require_admin
from patchbay.schemas.users import UserRead


async def get_hub(request: Request) -> Hub:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread, per request.
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated[Hub, Depends(get_hub)]


def bearer_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return key.strip()
    return request.headers.get("x-api-key")


async def current_user(request: Request, hub: HubDep) -> UserRead:
    return await hub.auth.authenticate(bearer_key(request))


CurrentUser = Annotated[UserRead, Depends(current_user)]


async def current_admin(user: CurrentUser) -> UserRead:
    require_admin(user)
    return user


AdminUser = Annotated[UserRead, Depends(current_admin)]
