"""Chats and the message tree in the database (synchronous: see `Database.write` and `run_sync`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.engine import Connection

from patchbay.errors import UserNotFound
from patchbay.schemas.chats import ChatRead, MessageRead, Timings, Usage
from patchbay.store.prepared import Prepared
from patchbay.store.refs import Ref, as_number, ref_filter
from patchbay.store.sqlite_writer import leave_loop_past, runs_on_loop
from patchbay.store.tables import chat_members, chats, messages, users


@dataclass(frozen=True, slots=True)
class ChatRecord:
    id: str
    number: int | None  # assigned by the database on insert
    owner_id: str
    title: str | None
    channel: str
    thread: str | None
    model: str | None
    current_message_id: str | None
    created_at: datetime
    updated_at: datetime

    def read(self, members: list[str] | None = None) -> ChatRead:
        return ChatRead(
            id=self.id,
            number=self.number,
            owner_id=self.owner_id,
            members=members or [],
            title=self.title,
            channel=self.channel,
            thread=self.thread,
            model=self.model,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


def _chat(row: Any) -> ChatRecord:
    return ChatRecord(**row._asdict())


def _message(row: Any, sibling_ids: list[str] | None = None) -> MessageRead:
    return MessageRead(
        id=row.id,
        number=row.number,
        chat_id=row.chat_id,
        parent_id=row.parent_id,
        author_id=row.author_id,
        role=row.role,
        content=row.content,
        status=row.status,
        model=row.model,
        usage=Usage(input_tokens=row.input_tokens, output_tokens=row.output_tokens),
        timings=Timings(ttft_ms=row.ttft_ms, duration_ms=row.duration_ms),
        error=row.error,
        created_at=row.created_at,
        sibling_ids=sibling_ids or [],
        tool_calls=(row.metadata or {}).get("tool_calls", []),
        assistant=(row.metadata or {}).get("assistant"),
        attachments=row.attachments or [],
    )


def find_chat(conn: Connection, chat_id: Ref) -> ChatRecord | None:
    """A chat by id or number."""
    row = (conn.execute(select(chats).where(ref_filter(chats, chat_id)))).first()
    return None if row is None else _chat(row)


def members(conn: Connection, chat_id: str) -> list[str]:
    """The ids of a chat's members besides its owner, in the order they were added."""
    query = (
        select(chat_members.c.user_id)
        .where(chat_members.c.chat_id == chat_id)
        .order_by(chat_members.c.created_at, chat_members.c.user_id)
    )
    return [row.user_id for row in conn.execute(query)]


def is_member(conn: Connection, chat_id: str, user_id: str) -> bool:
    query = select(chat_members.c.user_id).where(
        chat_members.c.chat_id == chat_id, chat_members.c.user_id == user_id
    )
    return conn.execute(query).first() is not None


def user_ids(conn: Connection, refs: Sequence[str]) -> list[str]:
    """User ids for names, ids or numbers; raises `UserNotFound` for the first unknown one."""
    ids = []
    for ref in refs:
        number = as_number(ref)
        where = users.c.number == number if number is not None else users.c.name == ref
        row = conn.execute(select(users.c.id).where(where)).first()
        if row is None and number is None:
            row = conn.execute(select(users.c.id).where(users.c.id == ref)).first()
        if row is None:
            raise UserNotFound(f"no user named {ref!r}")
        ids.append(row.id)
    return ids


def set_members(conn: Connection, chat_id: str, user_ids: Sequence[str], now: datetime) -> None:
    conn.execute(chat_members.delete().where(chat_members.c.chat_id == chat_id))
    unique = list(dict.fromkeys(user_ids))
    if unique:
        conn.execute(
            chat_members.insert(),
            [{"chat_id": chat_id, "user_id": uid, "created_at": now} for uid in unique],
        )


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
    conn: Connection, *, user_id: str | None, limit: int, before: str | None = None
) -> list[ChatRead]:
    """The chats a user owns or is a member of (every chat when `user_id` is None), newest first."""
    query = select(chats)
    if user_id is not None:
        membership = select(chat_members.c.chat_id).where(chat_members.c.user_id == user_id)
        query = query.where(or_(chats.c.owner_id == user_id, chats.c.id.in_(membership)))
    if before is not None:
        query = query.where(chats.c.id < before)
    rows = conn.execute(query.order_by(chats.c.id.desc()).limit(limit))
    return [_chat(row).read() for row in rows]


# Statements built once: on the hot path, building them costs more than running them.
# Every turn runs these: see `prepared` (the others go through SQLAlchemy as usual).
_INSERT_CHAT = Prepared(chats.insert())
_UPDATE_CHAT = Prepared(update(chats).where(chats.c.id == bindparam("b_id")))
_INSERT_MESSAGE = Prepared(messages.insert())
_UPDATE_MESSAGE = Prepared(update(messages).where(messages.c.id == bindparam("b_id")))


def insert_chat(conn: Connection, record: ChatRecord) -> None:
    _INSERT_CHAT.run(conn, _fields(record))


def update_chat(conn: Connection, chat_id: str, **values: object) -> None:
    values.setdefault("updated_at", datetime.now(UTC))
    _UPDATE_CHAT.run(conn, {"b_id": chat_id, **values})


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
    author_id: str | None = None,
    attachments: list[dict[str, object]] | None = None,
    metadata: dict[str, object] | None = None,
) -> dict[str, object]:
    """A full messages row, ready for a bulk insert (its number comes from the database)."""
    return {
        "id": id,
        "chat_id": chat_id,
        "parent_id": parent_id,
        "author_id": author_id,
        "role": role,
        "content": content,
        "status": status,
        "model": model,
        "prefix_hash": prefix_hash,
        "attachments": attachments or [],
        "metadata": metadata or {},
        "input_tokens": None,
        "output_tokens": None,
        "ttft_ms": None,
        "duration_ms": None,
        "error": None,
        "created_at": now,
        "updated_at": now,
    }


def insert_messages(conn: Connection, rows: Sequence[dict[str, object]]) -> None:
    leave_loop_past(conn, len(rows))
    _INSERT_MESSAGE.run(conn, rows)


def update_message(conn: Connection, message_id: str, **values: object) -> None:
    values.setdefault("updated_at", datetime.now(UTC))
    _UPDATE_MESSAGE.run(conn, {"b_id": message_id, **values})


def find_message(conn: Connection, message_id: Ref) -> MessageRead | None:
    """A message by id or number."""
    row = (conn.execute(select(messages).where(ref_filter(messages, message_id)))).first()
    return None if row is None else _message(row)


def told_message(conn: Connection, message_id: str) -> tuple[MessageRead, dict[str, object]] | None:
    """A message and its metadata (its tool calls, its template, what its outcome said)."""
    row = conn.execute(select(messages).where(messages.c.id == message_id)).first()
    return None if row is None else (_message(row), dict(row.metadata or {}))


def answers_to(conn: Connection, question_id: str) -> list[MessageRead]:
    """The answers to a user message, oldest first."""
    found = conn.execute(
        select(messages)
        .where(messages.c.parent_id == question_id, messages.c.role == "assistant")
        .order_by(messages.c.id)
    )
    return [_message(row) for row in found]


def branch(
    conn: Connection, *, chat_id: str, leaf_id: str | None, siblings: bool = False
) -> list[MessageRead]:
    """The messages from the root to `leaf_id`, oldest first; with `siblings`, each message also
    lists its alternatives (the other children of its parent)."""
    if leaf_id is None:
        return []
    if runs_on_loop(conn):
        leave_loop_past(conn, _message_count(conn, chat_id))
    rows = conn.execute(
        select(messages).where(messages.c.chat_id == chat_id).order_by(messages.c.id)
    )
    by_id = {row.id: row for row in rows}
    children: dict[str | None, list[str]] = {}
    if siblings:
        for row in by_id.values():
            children.setdefault(row.parent_id, []).append(row.id)
    path = []
    current: str | None = leaf_id
    while current is not None and current in by_id:
        row = by_id[current]
        path.append(_message(row, children.get(row.parent_id)))
        current = row.parent_id
    path.reverse()
    return path


def _message_count(conn: Connection, chat_id: str) -> int:
    found = conn.execute(
        select(func.count()).select_from(messages).where(messages.c.chat_id == chat_id)
    ).scalar()
    return int(found or 0)


def newest_leaf(conn: Connection, *, chat_id: str, message_id: str) -> str:
    """The end of the branch through `message_id`: its newest child, that one's, and so on."""
    if runs_on_loop(conn):
        leave_loop_past(conn, _message_count(conn, chat_id))
    rows = conn.execute(
        select(messages.c.id, messages.c.parent_id).where(messages.c.chat_id == chat_id)
    )
    newest: dict[str, str] = {}
    for row in rows:
        if row.parent_id is not None and row.id > newest.get(row.parent_id, ""):
            newest[row.parent_id] = row.id
    leaf = message_id
    while leaf in newest:
        leaf = newest[leaf]
    return leaf


def prefix_hash_of(conn: Connection, message_id: str) -> str | None:
    row = (conn.execute(select(messages.c.prefix_hash).where(messages.c.id == message_id))).first()
    return None if row is None else row.prefix_hash


def _fields(record: ChatRecord) -> dict[str, object]:
    # The number is left out so the database assigns it.
    return {name: getattr(record, name) for name in ChatRecord.__slots__ if name != "number"}
