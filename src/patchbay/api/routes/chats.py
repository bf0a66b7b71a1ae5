"""The caller's chats and their messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from patchbay.api.deps import CurrentUser, HubDep
from patchbay.schemas.chats import ChatCreate, ChatRead, ChatUpdate, MessageRead

router = APIRouter(prefix="/v1/chats", tags=["chats"])


@router.get("", response_model=list[ChatRead])
async def list_chats(
    hub: HubDep,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[str | None, Query(description="a chat id: list older chats")] = None,
    all_users: Annotated[bool, Query(description="admins: every user's chats")] = False,
) -> list[ChatRead]:
    """The chats the caller owns or is a member of, newest first."""
    return await hub.chats.list_chats(user, limit=limit, before=before, every_user=all_users)


@router.post("", response_model=ChatRead, status_code=201)
async def create_chat(data: ChatCreate, hub: HubDep, user: CurrentUser) -> ChatRead:
    """An empty chat owned by the caller, with `members` (user names or ids) besides."""
    return await hub.chats.create(user, data)


@router.get("/{chat_id}", response_model=ChatRead)
async def read_chat(chat_id: str, hub: HubDep, user: CurrentUser) -> ChatRead:
    """A chat by id or number."""
    return await hub.chats.get(user, chat_id)


@router.get("/{chat_id}/messages", response_model=list[MessageRead])
async def chat_messages(chat_id: str, hub: HubDep, user: CurrentUser) -> list[MessageRead]:
    """The chat's current branch, oldest first; `sibling_ids` lists each message's alternatives."""
    return await hub.chats.messages(user, chat_id)


@router.patch("/{chat_id}", response_model=ChatRead)
async def update_chat(chat_id: str, data: ChatUpdate, hub: HubDep, user: CurrentUser) -> ChatRead:
    """Rename, change members or model, or switch branch (`current_message_id`)."""
    return await hub.chats.update(user, chat_id, data)


@router.delete("/{chat_id}", status_code=204)
async def delete_chat(chat_id: str, hub: HubDep, user: CurrentUser) -> None:
    await hub.chats.delete(user, chat_id)
