"""Where a new user message goes in the message tree, and what the model sees before it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from patchbay.core.attachments import Said
from patchbay.core.chats import chain_hash, usable_chat
from patchbay.errors import ChatNotFound, InvalidRequest, MessageNotFound
from patchbay.ids import new_id
from patchbay.schemas.chats import AttachmentRead, MessageRead
from patchbay.schemas.turns import MessageIn, TurnCreate
from patchbay.schemas.users import UserRead
from patchbay.store import chats as chat_rows

TITLE_LENGTH = 80


@dataclass(slots=True)
class Placement:
    """Where a new user message goes and what the model sees before it."""

    chat_id: str
    parent_id: str | None
    parent_hash: str | None
    history: list[Said]
    new_chat: chat_rows.ChatRecord | None
    rows: list[dict[str, object]]


def place(
    conn: Connection,
    user: UserRead,
    turn: TurnCreate,
    now: datetime,
    history_files: Sequence[list[AttachmentRead]] = (),
) -> Placement:
    """Where `turn` goes: an explicit chat, a stored chat its history ends, a channel thread's
    chat, or a new chat. `history_files`: the files of each message of the turn's history,
    accepted (kept, made text) for a history stored as a new chat; none for one that matches."""
    if turn.chat_id is not None:
        usable = usable_chat(conn, user, turn.chat_id)
        return _continue(conn, usable.id, usable.current_message_id)
    if turn.history:
        return _from_history(conn, user, turn, now, history_files)
    if turn.thread is not None:
        chat = chat_rows.find_thread_chat(
            conn, owner_id=user.id, channel=turn.channel, thread=turn.thread
        )
        if chat is not None:
            return _continue(conn, chat.id, chat.current_message_id)
    chat = _new_chat(user, turn, now)
    return Placement(chat.id, None, None, [], chat, [])


def usable_message(conn: Connection, user: UserRead, message_id: str | int) -> MessageRead:
    """The message, if `user` may use its chat; otherwise `MessageNotFound`, as for a message
    that does not exist (never naming its chat)."""
    message = chat_rows.find_message(conn, message_id)
    try:
        if message is not None:
            usable_chat(conn, user, message.chat_id)
    except ChatNotFound:
        message = None
    if message is None:
        raise MessageNotFound(f"no message with id {message_id!r}")
    return message


def question_of(conn: Connection, user: UserRead, message_id: str | int) -> MessageRead:
    """The user message to answer again, given it or one of its answers."""
    message = usable_message(conn, user, message_id)
    if message.role == "assistant" and message.parent_id is not None:
        question = chat_rows.find_message(conn, message.parent_id)
        if question is not None and question.role == "user":
            return question
    if message.role == "user":
        return message
    raise InvalidRequest("only an answer, or the message it answers, can be answered again")


def _continue(conn: Connection, chat_id: str, leaf_id: str | None) -> Placement:
    history = said_in(chat_rows.branch(conn, chat_id=chat_id, leaf_id=leaf_id))
    parent_hash = chat_rows.prefix_hash_of(conn, leaf_id) if leaf_id else None
    if leaf_id is not None and parent_hash is None:
        # The leaf has none (an answer that failed, was cancelled or is still coming): the hash
        # of what the model is sent, so the new message's matches no conversation that starts
        # with it (a request would be continued with earlier messages it never sent).
        parent_hash = said_hash(history)
    return Placement(
        chat_id=chat_id,
        parent_id=leaf_id,
        parent_hash=parent_hash,
        history=history,
        new_chat=None,
        rows=[],
    )


def said_in(branch: Sequence[MessageRead]) -> list[Said]:
    """What the model is sent of a branch: its complete messages, and of the others (failed,
    cancelled) those with something written."""
    return [
        (m.role, m.content, m.attachments) for m in branch if m.status == "complete" or m.content
    ]


def said_hash(history: Sequence[Said]) -> str | None:
    """The prefix hash of a conversation as the model is sent it (see `history_hashes`)."""
    prefix = None
    for role, content, _files in history:
        prefix = chain_hash(prefix, role, content)
    return prefix


def history_hashes(history: Sequence[MessageIn]) -> list[str]:
    """The prefix hash of each message of a history: what a stored chat's messages are matched by
    (their roles and texts; files are not part of it)."""
    hashes: list[str] = []
    for message in history:
        hashes.append(chain_hash(hashes[-1] if hashes else None, message.role, message.content))
    return hashes


def stored_history(
    conn: Connection, user: UserRead, history: Sequence[MessageIn], hashes: list[str]
) -> tuple[str, str] | None:
    """The (chat id, message id) of the user's stored chat this history ends (its last answer)."""
    if history[-1].role != "assistant":
        return None
    return chat_rows.find_prefix(conn, owner_id=user.id, prefix_hash=hashes[-1])


def _from_history(
    conn: Connection,
    user: UserRead,
    turn: TurnCreate,
    now: datetime,
    files: Sequence[list[AttachmentRead]],
) -> Placement:
    """Continue the stored chat this history ends (the model sees it as stored, with its files),
    or store the history as a new chat, with `files`."""
    history = turn.history or []
    hashes = history_hashes(history)
    found = stored_history(conn, user, history, hashes)
    if found is not None:
        return _continue(conn, *found)
    files = list(files) or [[] for _ in history]
    chat = _new_chat(user, turn, now)
    rows = _history_rows(chat.id, history, hashes, files, now)
    pairs: list[Said] = [
        (m.role, m.content, attached) for m, attached in zip(history, files, strict=True)
    ]
    return Placement(chat.id, str(rows[-1]["id"]), hashes[-1], pairs, chat, rows)


def _history_rows(
    chat_id: str,
    history: list[MessageIn],
    hashes: list[str],
    files: list[list[AttachmentRead]],
    now: datetime,
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    parent: str | None = None
    for message, prefix, attached in zip(history, hashes, files, strict=True):
        message_id = new_id()
        rows.append(
            chat_rows.message_row(
                id=message_id,
                chat_id=chat_id,
                parent_id=parent,
                role=message.role,
                content=message.content,
                status="complete",
                now=now,
                prefix_hash=prefix,
                attachments=[a.model_dump() for a in attached],
            )
        )
        parent = message_id
    return rows


def _new_chat(user: UserRead, turn: TurnCreate, now: datetime) -> chat_rows.ChatRecord:
    title = " ".join(turn.text.split())[:TITLE_LENGTH] or None
    return chat_rows.ChatRecord(
        id=new_id(),
        number=None,
        owner_id=user.id,
        title=title,
        channel=turn.channel,
        thread=turn.thread,
        model=turn.model,
        current_message_id=None,
        created_at=now,
        updated_at=now,
    )
