"""Dependencies shared by the routes: the hub and the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from patchbay.core.hub import Hub
from patchbay.core.users import SYSTEM, require_admin
from patchbay.errors import AuthenticationFailed
from patchbay.schemas.senders import AS_USER_HEADER, MODULE_TOKEN_HEADER
from patchbay.schemas.users import UserRead
from patchbay.tokens import valid_module_token


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
    """The caller: by API key, or a channel module acting for one of its senders (the module
    token and `X-Patchbay-As-User`)."""
    as_user = request.headers.get(AS_USER_HEADER)
    if as_user is not None:
        if not valid_module_token(hub.secret, request.headers.get(MODULE_TOKEN_HEADER)):
            raise AuthenticationFailed("acting for a user needs this installation's module token")
        return await hub.users.get(SYSTEM, as_user)
    return await hub.auth.authenticate(bearer_key(request))


async def current_module(request: Request, hub: HubDep) -> None:
    """A module of this installation (signed with its module token)."""
    if not valid_module_token(hub.secret, request.headers.get(MODULE_TOKEN_HEADER)):
        raise AuthenticationFailed("this needs this installation's module token")


ModuleCaller = Annotated[None, Depends(current_module)]


CurrentUser = Annotated[UserRead, Depends(current_user)]


async def current_admin(user: CurrentUser) -> UserRead:
    require_admin(user)
    return user


AdminUser = Annotated[UserRead, Depends(current_admin)]
