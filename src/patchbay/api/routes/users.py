"""Users and API keys: admins manage everyone, a user sees themself and their own keys."""

from __future__ import annotations

from fastapi import APIRouter

from patchbay.api.deps import AdminUser, CurrentUser, HubDep
from patchbay.schemas.users import (
    ApiKeyCreate,
    ApiKeyIssued,
    ApiKeyRead,
    UserCreate,
    UserRead,
    UserUpdate,
)

router = APIRouter(prefix="/v1", tags=["users"])


@router.get("/me", response_model=UserRead)
async def me(user: CurrentUser) -> UserRead:
    return user


@router.get("/users", response_model=list[UserRead])
async def list_users(hub: HubDep, _admin: AdminUser) -> list[UserRead]:
    return await hub.users.list_users()


@router.post("/users", response_model=UserRead, status_code=201)
async def create_user(data: UserCreate, hub: HubDep, _admin: AdminUser) -> UserRead:
    return await hub.users.create(data)


@router.get("/users/{user_id}", response_model=UserRead)
async def read_user(user_id: str, hub: HubDep, _admin: AdminUser) -> UserRead:
    return await hub.users.get(user_id)


@router.patch("/users/{user_id}", response_model=UserRead)
async def update_user(user_id: str, data: UserUpdate, hub: HubDep, _admin: AdminUser) -> UserRead:
    return await hub.users.update(user_id, data)


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(user_id: str, hub: HubDep, _admin: AdminUser) -> None:
    await hub.users.delete(user_id)


@router.post("/users/{user_id}/keys", response_model=ApiKeyIssued, status_code=201)
async def issue_key(
    user_id: str, data: ApiKeyCreate, hub: HubDep, _admin: AdminUser
) -> ApiKeyIssued:
    """A new key for the user; the key itself is in this answer only."""
    return await hub.users.issue_key(user_id, name=data.name)


@router.get("/keys", response_model=list[ApiKeyRead])
async def list_keys(hub: HubDep, user: CurrentUser, all_users: bool = False) -> list[ApiKeyRead]:
    """The caller's keys (an admin may ask for everyone's with `?all_users=true`)."""
    everyone = all_users and user.role == "admin"
    return await hub.users.list_keys(None if everyone else user.id)


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, hub: HubDep, user: CurrentUser) -> None:
    await hub.users.revoke_key(key_id, actor=user)
