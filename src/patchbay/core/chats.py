"""Chats and their members: who may see a chat, creating one for several people, loading a branch.

A chat's owner and its members may read it and talk in it; only the owner (or an admin) may change
or delete it. Admins may act on every chat.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy.engine import Connection

from patchbay.errors import ChatNotFound, MessageNotFound, PermissionDenied
from patchbay.ids import new_id
from patchbay.schemas.chats import ChatCreate, ChatRead, ChatUpdate, MessageRead
from patchbay.schemas.users import UserRead
from patchbay.store import chats as chat_rows
from patchbay.store.db import Database
from patchbay.store.refs import Ref


def chain_hash(parent_hash: str | None, role: str, content: str) -> str:
    """The hash of a conversation prefix: its parent prefix's hash plus one message."""
    digest = hashlib.sha256()
    digest.update((parent_hash or "").encode())
    digest.update(b"\x1f" + role.encode() + b"\x1f")
    digest.update(content.encode())
    return digest.hexdigest()


def may_use(conn: Connection, user: UserRead, chat: chat_rows.ChatRecord) -> bool:
    """Whether `user` may read the chat and talk in it."""
    return (
        user.role == "admin"
        or chat.owner_id == user.id
        or chat_rows.is_member(conn, chat.id, user.id)
    )


def usable_chat(conn: Connection, user: UserRead, chat_id: Ref) -> chat_rows.ChatRecord:
    """The chat, if `user` may use it; otherwise `ChatNotFound` (never saying it exists)."""
    chat = chat_rows.find_chat(conn, chat_id)
    if chat is None or not may_use(conn, user, chat):
        raise ChatNotFound(f"no chat with id {chat_id!r}")
    return chat


class ChatService:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, user: UserRead, data: ChatCreate) -> ChatRead:
        """A new, empty chat owned by `user`, with `data.members` (names or ids) as members."""
        now = datetime.now(UTC)
        record = chat_rows.ChatRecord(
            id=new_id(),
            number=None,
            owner_id=user.id,
            title=data.title,
            channel="api",
            thread=None,
            model=data.model,
            current_message_id=None,
            created_at=now,
            updated_at=now,
        )

        def store(conn: Connection) -> ChatRead:
            member_ids = [m for m in chat_rows.user_ids(conn, data.members) if m != user.id]
            chat_rows.insert_chat(conn, record)
            chat_rows.set_members(conn, record.id, member_ids, now)
            return _read(conn, record.id)

        return await self._db.write(store)

    async def list_chats(
        self, user: UserRead, *, limit: int, before: str | None, every_user: bool = False
    ) -> list[ChatRead]:
        """The chats `user` owns or is a member of; with `every_user` (admins), every chat."""
        user_id = None if every_user and user.role == "admin" else user.id
        async with self._db.connect() as conn:
            return await conn.run_sync(
                lambda sync: chat_rows.list_chats(sync, user_id=user_id, limit=limit, before=before)
            )

    async def get(self, user: UserRead, chat_id: Ref) -> ChatRead:
        async with self._db.connect() as conn:
            return await conn.run_sync(
                lambda sync: _read(sync, usable_chat(sync, user, chat_id).id)
            )

    async def messages(self, user: UserRead, chat_id: Ref) -> list[MessageRead]:
        """The chat's current branch, oldest first; each message lists its siblings."""

        def load(conn: Connection) -> list[MessageRead]:
            chat = usable_chat(conn, user, chat_id)
            return chat_rows.branch(
                conn, chat_id=chat.id, leaf_id=chat.current_message_id, siblings=True
            )

        async with self._db.connect() as conn:
            return await conn.run_sync(load)

    async def update(self, user: UserRead, chat_id: Ref, data: ChatUpdate) -> ChatRead:
        asked = data.model_dump(exclude_unset=True)
        now = datetime.now(UTC)

        def store(conn: Connection) -> ChatRead:
            # Its own copy: the writer may run it again (alone, or in its thread).
            values = dict(asked)
            # Members may switch the branch (they regenerate too); the rest is the owner's.
            chat = (
                usable_chat(conn, user, chat_id)
                if values.keys() <= {"current_message_id"}
                else _owned_chat(conn, user, chat_id)
            )
            if "members" in values:
                member_ids = chat_rows.user_ids(conn, values.pop("members") or [])
                chat_rows.set_members(
                    conn, chat.id, [m for m in member_ids if m != chat.owner_id], now
                )
            if values.get("current_message_id") is not None:
                values["current_message_id"] = _branch_leaf(
                    conn, chat, values["current_message_id"]
                )
            chat_rows.update_chat(conn, chat.id, **values, updated_at=now)
            return _read(conn, chat.id)

        return await self._db.write(store)

    async def delete(self, user: UserRead, chat_id: Ref) -> None:
        def store(conn: Connection) -> None:
            chat_rows.delete_chat(conn, _owned_chat(conn, user, chat_id).id)

        await self._db.write(store)


def _owned_chat(conn: Connection, user: UserRead, chat_id: Ref) -> chat_rows.ChatRecord:
    chat = usable_chat(conn, user, chat_id)
    if user.role != "admin" and chat.owner_id != user.id:
        raise PermissionDenied("only the chat's owner may change or delete it")
    return chat


def _branch_leaf(conn: Connection, chat: chat_rows.ChatRecord, message_ref: Ref) -> str:
    message = chat_rows.find_message(conn, message_ref)
    if message is None or message.chat_id != chat.id:
        raise MessageNotFound(f"no message {message_ref!r} in this chat")
    return chat_rows.newest_leaf(conn, chat_id=chat.id, message_id=message.id)


def _read(conn: Connection, chat_id: str) -> ChatRead:
    chat = chat_rows.find_chat(conn, chat_id)
    if chat is None:
        raise ChatNotFound(f"no chat with id {chat_id!r}")
    return chat.read(chat_rows.members(conn, chat_id))
