"""Chats and the message tree in the database (synchronous: see `Database.write` and `run_sync`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from patchbay.schemas.chats import ChatRead, MessageRead, Timings, Usage
from patchbay.store.tables import chats, messages


@dataclass(frozen=True, slots=True)
class ChatRecord:
    id: str
    owner_id: str
    title: str | None
    channel: str
    thread: str | None
    model: str | None
    current_message_id: str | None
    created_at: datetime
    updated_at: datetime

    def read(self) -> ChatRead:
        return ChatRead(
            id=self.id,
            title=self.title,
            channel=self.channel,
            thread=self.thread,
            model=self.model,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


def _chat(row: Any) -> ChatRecord:
    return ChatRecord(**row._asdict())


def _message(row: Any) -> MessageRead:
    return MessageRead(
        id=row.id,
        chat_id=row.chat_id,
        parent_id=row.parent_id,
        role=row.role,
        content=row.content,
        status=row.status,
        model=row.model,
        usage=Usage(input_tokens=row.input_tokens, output_tokens=row.output_tokens),
        timings=Timings(ttft_ms=row.ttft_ms, duration_ms=row.duration_ms),
        error=row.error,
        created_at=row.created_at,
    )


def find_chat(conn: Connection, chat_id: str) -> ChatRecord | None:
    row = (conn.execute(select(chats).where(chats.c.id == chat_id))).first()
    return None if row is None else _chat(row)


def find_thread_chat(
    conn: Connection, *, owner_id: str, channel: str, thread: str
) -> ChatRecord | None:
    query = (
        select(chats)
        .where(chats.c.owner_id == owner_id, chats.c.channel == channel, chats.c.thread == thread)
        .order_by(chats.c.id.desc())
        .limit(1)
    )
    row = (conn.execute(query)).first()
    return None if row is None else _chat(row)


def find_prefix(conn: Connection, *, owner_id: str, prefix_hash: str) -> tuple[str, str] | None:
    """The (chat id, message id) of the owner's newest message that ends this exact history."""
    query = (
        select(messages.c.chat_id, messages.c.id)
        .join(chats, chats.c.id == messages.c.chat_id)
        .where(messages.c.prefix_hash == prefix_hash, chats.c.owner_id == owner_id)
        .order_by(messages.c.id.desc())
        .limit(1)
    )
    row = (conn.execute(query)).first()
    return None if row is None else (row.chat_id, row.id)


def list_chats(
    conn: Connection, *, owner_id: str, limit: int, before: str | None = None
) -> list[ChatRead]:
    query = select(chats).where(chats.c.owner_id == owner_id)
    if before is not None:
        query = query.where(chats.c.id < before)
    rows = conn.execute(query.order_by(chats.c.id.desc()).limit(limit))
    return [_chat(row).read() for row in rows]


# Statements built once: on the hot path, building them costs more than running them.
_INSERT_CHAT = chats.insert()
_UPDATE_CHAT = update(chats).where(chats.c.id == bindparam("b_id"))
_INSERT_MESSAGE = messages.insert()
_UPDATE_MESSAGE = update(messages).where(messages.c.id == bindparam("b_id"))


def insert_chat(conn: Connection, record: ChatRecord) -> None:
    conn.execute(_INSERT_CHAT, _fields(record))


def update_chat(conn: Connection, chat_id: str, **values: object) -> None:
    values.setdefault("updated_at", datetime.now(UTC))
    conn.execute(_UPDATE_CHAT, {"b_id": chat_id, **values})


def delete_chat(conn: Connection, chat_id: str) -> None:
    conn.execute(chats.delete().where(chats.c.id == chat_id))


def message_row(
    *,
    id: str,
    chat_id: str,
    parent_id: str | None,
    role: str,
    content: str,
    status: str,
    now: datetime,
    model: str | None = None,
    prefix_hash: str | None = None,
) -> dict[str, object]:
    """A full messages row, ready for a bulk insert."""
    return {
        "id": id,
        "chat_id": chat_id,
        "parent_id": parent_id,
        "role": role,
        "content": content,
        "status": status,
        "model": model,
        "prefix_hash": prefix_hash,
        "attachments": [],
        "metadata": {},
        "input_tokens": None,
        "output_tokens": None,
        "ttft_ms": None,
        "duration_ms": None,
        "error": None,
        "created_at": now,
        "updated_at": now,
    }


def insert_messages(conn: Connection, rows: Sequence[dict[str, object]]) -> None:
    if rows:
        conn.execute(_INSERT_MESSAGE, list(rows))


def update_message(conn: Connection, message_id: str, **values: object) -> None:
    values.setdefault("updated_at", datetime.now(UTC))
    conn.execute(_UPDATE_MESSAGE, {"b_id": message_id, **values})


def find_message(conn: Connection, message_id: str) -> MessageRead | None:
    row = (conn.execute(select(messages).where(messages.c.id == message_id))).first()
    return None if row is None else _message(row)


def branch(conn: Connection, *, chat_id: str, leaf_id: str | None) -> list[MessageRead]:
    """The messages from the root to `leaf_id`, oldest first."""
    if leaf_id is None:
        return []
    rows = conn.execute(
        select(messages).where(messages.c.chat_id == chat_id).order_by(messages.c.id)
    )
    by_id = {row.id: row for row in rows}
    path = []
    current: str | None = leaf_id
    while current is not None and current in by_id:
        row = by_id[current]
        path.append(_message(row))
        current = row.parent_id
    path.reverse()
    return path


def prefix_hash_of(conn: Connection, message_id: str) -> str | None:
    row = (conn.execute(select(messages.c.prefix_hash).where(messages.c.id == message_id))).first()
    return None if row is None else row.prefix_hash


def _fields(record: ChatRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in ChatRecord.__slots__}
