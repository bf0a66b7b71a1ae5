"""Users and API keys: admins manage everyone, a user sees themself and their own keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from patchbay.api.deps import CurrentUser, HubDep
from patchbay.schemas.users import (
    ApiKeyCreate,
    ApiKeyIssued,
    ApiKeyRead,
    InstructionRecord,
    UserCreate,
    UserRead,
    UserUpdate,
)

router = APIRouter(prefix="/v1", tags=["users"])


@router.get("/me", response_model=UserRead)
async def me(user: CurrentUser) -> UserRead:
    return user


@router.get("/users", response_model=list[UserRead])
async def list_users(hub: HubDep, user: CurrentUser) -> list[UserRead]:
    """Every user for an admin; the caller alone for anyone else."""
    return await hub.users.list_users(user)


@router.post("/users", response_model=UserRead, status_code=201)
async def create_user(data: UserCreate, hub: HubDep, user: CurrentUser) -> UserRead:
    return await hub.users.create(user, data)


@router.get("/users/{user_id}", response_model=UserRead)
async def read_user(user_id: str, hub: HubDep, user: CurrentUser) -> UserRead:
    """A user by id or number (callers who are not admins: only themself)."""
    return await hub.users.get(user, user_id)


@router.patch("/users/{user_id}", response_model=UserRead)
async def update_user(user_id: str, data: UserUpdate, hub: HubDep, user: CurrentUser) -> UserRead:
    """Change a user; `instruction_recording` turns recording of their instructions on or off."""
    return await hub.users.update(user, user_id, data)


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(user_id: str, hub: HubDep, user: CurrentUser) -> None:
    await hub.users.delete(user, user_id)


@router.get("/users/{user_id}/instruction-records", response_model=list[InstructionRecord])
async def list_records(
    user_id: str,
    hub: HubDep,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[str | None, Query(description="a record id: list older ones")] = None,
) -> list[InstructionRecord]:
    """The instructions recorded for a user, newest first."""
    return await hub.users.records(user, user_id, limit=limit, before=before)


@router.delete("/users/{user_id}/instruction-records")
async def delete_records(user_id: str, hub: HubDep, user: CurrentUser) -> dict[str, int]:
    return {"deleted": await hub.users.delete_records(user, user_id)}


@router.post("/users/{user_id}/keys", response_model=ApiKeyIssued, status_code=201)
async def issue_key(
    user_id: str, data: ApiKeyCreate, hub: HubDep, user: CurrentUser
) -> ApiKeyIssued:
    """A new key for the user; the key itself is in this answer only."""
    return await hub.users.issue_key(user, user_id, name=data.name)


@router.get("/keys", response_model=list[ApiKeyRead])
async def list_keys(hub: HubDep, user: CurrentUser, all_users: bool = False) -> list[ApiKeyRead]:
    """The caller's keys (an admin may ask for everyone's with `?all_users=true`)."""
    everyone = all_users and user.role == "admin"
    return await hub.users.list_keys(None if everyone else user.id)


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, hub: HubDep, user: CurrentUser) -> None:
    await hub.users.revoke_key(key_id, actor=user)
