"""Reading and managing a user's chats; users only ever see their own."""

from __future__ import annotations

import hashlib

from patchbay.errors import ChatNotFound
from patchbay.schemas.chats import ChatRead, ChatUpdate, MessageRead
from patchbay.schemas.users import UserRead
from patchbay.store import chats as chat_rows
from patchbay.store.db import Database


def chain_hash(parent_hash: str | None, role: str, content: str) -> str:
    """The hash of a conversation prefix: its parent prefix's hash plus one message."""
    digest = hashlib.sha256()
    digest.update((parent_hash or "").encode())
    digest.update(b"\x1f" + role.encode() + b"\x1f")
    digest.update(content.encode())
    return digest.hexdigest()


class ChatService:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def list_chats(self, user: UserRead, *, limit: int, before: str | None) -> list[ChatRead]:
        async with self._db.connect() as conn:
            return await conn.run_sync(
                lambda sync: chat_rows.list_chats(
                    sync, owner_id=user.id, limit=limit, before=before
                )
            )

    async def get(self, user: UserRead, chat_id: str) -> chat_rows.ChatRecord:
        async with self._db.connect() as conn:
            chat = await conn.run_sync(chat_rows.find_chat, chat_id)
        if chat is None or chat.owner_id != user.id:
            raise ChatNotFound(f"no chat with id {chat_id!r}")
        return chat

    async def messages(self, user: UserRead, chat_id: str) -> list[MessageRead]:
        """The chat's current branch, oldest first."""
        chat = await self.get(user, chat_id)
        async with self._db.connect() as conn:
            return await conn.run_sync(
                lambda sync: chat_rows.branch(
                    sync, chat_id=chat.id, leaf_id=chat.current_message_id
                )
            )

    async def update(self, user: UserRead, chat_id: str, data: ChatUpdate) -> ChatRead:
        await self.get(user, chat_id)
        values = data.model_dump(exclude_unset=True)
        await self._db.write(lambda conn: chat_rows.update_chat(conn, chat_id, **values))
        return (await self.get(user, chat_id)).read()

    async def delete(self, user: UserRead, chat_id: str) -> None:
        await self.get(user, chat_id)
        await self._db.write(lambda conn: chat_rows.delete_chat(conn, chat_id))
