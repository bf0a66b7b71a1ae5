"""The caller's chats and their messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from patchbay.api.deps import CurrentUser, HubDep
from patchbay.schemas.chats import ChatRead, ChatUpdate, MessageRead

router = APIRouter(prefix="/v1/chats", tags=["chats"])


@router.get("", response_model=list[ChatRead])
async def list_chats(
    hub: HubDep,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[str | None, Query(description="a chat id: list older chats")] = None,
) -> list[ChatRead]:
    """The caller's chats, newest first."""
    return await hub.chats.list_chats(user, limit=limit, before=before)


@router.get("/{chat_id}", response_model=ChatRead)
async def read_chat(chat_id: str, hub: HubDep, user: CurrentUser) -> ChatRead:
    return (await hub.chats.get(user, chat_id)).read()


@router.get("/{chat_id}/messages", response_model=list[MessageRead])
async def chat_messages(chat_id: str, hub: HubDep, user: CurrentUser) -> list[MessageRead]:
    """The chat's current branch, oldest first."""
    return await hub.chats.messages(user, chat_id)


@router.patch("/{chat_id}", response_model=ChatRead)
async def update_chat(chat_id: str, data: ChatUpdate, hub: HubDep, user: CurrentUser) -> ChatRead:
    return await hub.chats.update(user, chat_id, data)


@router.delete("/{chat_id}", status_code=204)
async def delete_chat(chat_id: str, hub: HubDep, user: CurrentUser) -> None:
    await hub.chats.delete(user, chat_id)
