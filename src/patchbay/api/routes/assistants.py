"""Named assistants: everyone lists and reads them; admins add, change and remove them."""

from __future__ import annotations

from fastapi import APIRouter

from patchbay.api.deps import CurrentUser, HubDep
from patchbay.schemas.assistants import AssistantCreate, AssistantRead, AssistantUpdate

router = APIRouter(prefix="/v1/assistants", tags=["assistants"])


@router.get("", response_model=list[AssistantRead])
async def list_assistants(hub: HubDep, _user: CurrentUser) -> list[AssistantRead]:
    return await hub.assistants.list_assistants()


@router.post("", response_model=AssistantRead, status_code=201)
async def create_assistant(data: AssistantCreate, hub: HubDep, user: CurrentUser) -> AssistantRead:
    """Store a template under a name; turns use it with `assistant_name` or `model: assistant:NAME`."""
    return await hub.assistants.create(user, data)


@router.get("/{name}", response_model=AssistantRead)
async def read_assistant(name: str, hub: HubDep, _user: CurrentUser) -> AssistantRead:
    return await hub.assistants.get(name)


@router.patch("/{name}", response_model=AssistantRead)
async def update_assistant(
    name: str, data: AssistantUpdate, hub: HubDep, user: CurrentUser
) -> AssistantRead:
    return await hub.assistants.update(user, name, data)


@router.delete("/{name}", status_code=204)
async def delete_assistant(name: str, hub: HubDep, user: CurrentUser) -> None:
    await hub.assistants.delete(user, name)
