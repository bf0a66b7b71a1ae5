"""SQLite's writer: batches on the event loop when the lock is free, in its thread when it is not
(without blocking the loop) or when an op has many rows to go through (a long chat), one op's
error failing only that op, and the WAL kept checkpointed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.engine import Connection

from patchbay.ids import new_id
from patchbay.schemas.users import UserRead
from patchbay.store import chats as chat_rows
from patchbay.store.db import Database
from patchbay.store.sqlite_writer import (
    CHECKPOINT_EVERY,
    LOOP_ROWS,
    SqliteWriter,
    leave_loop_past,
)
from patchbay.store.users import insert_user


@pytest.fixture
def path(tmp_path: Path) -> Path:
    db = tmp_path / "w.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    return db


@pytest.fixture
async def writer(path: Path) -> AsyncIterator[SqliteWriter]:
    w = SqliteWriter(make_url(f"sqlite:///{path}"))
    yield w
    await w.close()


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[tuple[Database, UserRead]]:
    """A migrated patchbay database and a user in it."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    await db.migrate()
    try:
        async with db.begin() as conn:
            user = await insert_user(conn, name="ann", role="user", profile={})
        yield db, user
    finally:
        await db.close()


def insert(body: str) -> Callable[[Connection], int]:
    """An op that adds a note and says which thread ran it."""

    def op(conn: Connection) -> int:
        conn.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": body})
        return threading.get_ident()

    return op


def bodies(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT body FROM notes ORDER BY id")]


async def test_writes_run_on_the_event_loop_when_the_lock_is_free(
    writer: SqliteWriter, path: Path
) -> None:
    threads = await asyncio.gather(*(writer.submit(insert(f"n{i}")) for i in range(5)))
    assert set(threads) == {threading.get_ident()}
    assert bodies(path) == ["n0", "n1", "n2", "n3", "n4"]


async def test_a_write_waits_for_a_taken_lock_in_the_thread_while_the_loop_runs_on(
    writer: SqliteWriter, path: Path
) -> None:
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        written = writer.submit(insert("after the lock"))
        await asyncio.sleep(0.5)
        assert not written.done()
        assert ticks >= 10  # the loop was not held while the write waited for the lock
        locker.rollback()
        thread = await asyncio.wait_for(written, 5)
    finally:
        ticker.cancel()
        locker.close()
    assert thread != threading.get_ident()
    assert bodies(path) == ["after the lock"]
    # once the lock is free, writes are back on the loop
    assert await writer.submit(insert("next")) == threading.get_ident()


def transaction_of(conn: Connection) -> object:
    """An op that says which transaction it ran in."""
    return conn.get_transaction()


async def test_a_write_that_may_wait_shares_the_next_writes_commit(
    writer: SqliteWriter, path: Path
) -> None:
    waiting = writer.submit(transaction_of, within_s=30)
    await asyncio.sleep(0.1)
    assert not waiting.done()  # nothing else to commit with yet
    assert await writer.submit(transaction_of) is await waiting


async def test_a_write_that_may_wait_is_committed_alone_when_its_time_is_up(
    writer: SqliteWriter, path: Path
) -> None:
    waiting = writer.submit(insert("alone"), within_s=0.05)
    await asyncio.wait_for(waiting, 5)
    assert bodies(path) == ["alone"]


async def test_a_write_that_may_wait_is_committed_when_the_writer_closes(path: Path) -> None:
    writer = SqliteWriter(make_url(f"sqlite:///{path}"))
    waiting = writer.submit(insert("before closing"), within_s=30)
    await writer.close()
    assert waiting.done()
    assert bodies(path) == ["before closing"]


async def test_a_told_write_is_committed_after_the_tasks_its_telling_wakes(
    writer: SqliteWriter, path: Path
) -> None:
    told = asyncio.Event()
    found: list[list[str]] = []

    async def listener() -> None:
        await told.wait()
        found.append(bodies(path))

    listening = asyncio.create_task(listener())
    await asyncio.sleep(0)
    written = writer.submit(insert("the answer"), told=True)
    told.set()  # as the job's `done` event wakes a client waiting for it
    await asyncio.wait_for(asyncio.gather(written, listening), 5)
    assert found == [[]]  # the listener had its turn before the commit
    assert bodies(path) == ["the answer"]


@pytest.mark.parametrize("opening", ["connect", "begin"])
async def test_reads_wait_for_the_writes_told_before_their_commit(
    database: tuple[Database, UserRead], opening: str
) -> None:
    """Through `connect` (reads) and `begin` (a transaction of its own, as user and key
    management open)."""
    db, user = database
    renamed = db.write_soon(
        lambda conn: conn.execute(
            text("UPDATE users SET name = 'bea' WHERE id = :id"), {"id": user.id}
        ),
        within_s=0.2,  # held back, so a read that did not wait would come first
        told=True,
    )
    async with getattr(db, opening)() as conn:
        name = (
            await conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user.id})
        ).scalar_one()
    assert renamed is not None and renamed.done()
    assert name == "bea"


async def test_an_op_that_fails_fails_alone(writer: SqliteWriter, path: Path) -> None:
    def broken(conn: Connection) -> None:
        conn.execute(text("INSERT INTO notes (body) VALUES ('half')"))
        raise ValueError("broken op")

    first, failed, last = (
        writer.submit(insert("first")),
        writer.submit(broken),
        writer.submit(insert("last")),
    )
    await asyncio.gather(first, last)
    with pytest.raises(ValueError, match="broken op"):
        await failed
    assert bodies(path) == ["first", "last"]


async def test_the_wal_starts_over_while_the_loop_keeps_committing(
    writer: SqliteWriter, path: Path
) -> None:
    commits = 40 * CHECKPOINT_EVERY
    for i in range(commits):  # one after another: the loop commits while the thread checkpoints
        await writer.submit(insert(f"{i:05d}" + "x" * 2000))
    # Each commit writes a frame (a page, ~4 KB) or more to the WAL, and the file keeps the most it
    # ever held. Never started over, the WAL would hold them all (about 16,000 frames here);
    # started over at each checkpoint, it holds those of a few checkpoint intervals at most.
    wal_frames = (path.parent / f"{path.name}-wal").stat().st_size // 4096
    assert wal_frames < 8 * CHECKPOINT_EVERY
    assert len(bodies(path)) == commits


async def test_an_op_with_many_rows_to_go_through_runs_in_the_thread(writer: SqliteWriter) -> None:
    def op(rows: int) -> Callable[[Connection], int]:
        def run(conn: Connection) -> int:
            leave_loop_past(conn, rows)
            return insert(f"{rows} rows")(conn)

        return run

    assert await writer.submit(op(LOOP_ROWS)) == threading.get_ident()
    assert await writer.submit(op(LOOP_ROWS + 1)) != threading.get_ident()


async def test_a_long_chat_is_stored_and_read_in_the_thread(
    database: tuple[Database, UserRead],
) -> None:
    db, user = database
    now = datetime.now(UTC)

    def chat_of(length: int) -> tuple[str, str, list[dict[str, object]]]:
        chat_id, rows, parent = new_id(), [], None
        for i in range(length):
            rows.append(
                chat_rows.message_row(
                    id=new_id(), chat_id=chat_id, parent_id=parent, role="user",
                    content=f"m{i}", status="complete", now=now,
                )
            )  # fmt: skip
            parent = str(rows[-1]["id"])
        return chat_id, str(parent), rows

    def store(chat_id: str, rows: list[dict[str, object]]) -> Callable[[Connection], int]:
        def run(conn: Connection) -> int:
            record = chat_rows.ChatRecord(
                id=chat_id, number=None, owner_id=user.id, title=None, channel="api",
                thread=None, model=None, current_message_id=None, created_at=now,
                updated_at=now,
            )  # fmt: skip
            chat_rows.insert_chat(conn, record)
            chat_rows.insert_messages(conn, rows)
            return threading.get_ident()

        return run

    def read(chat_id: str, leaf: str) -> Callable[[Connection], tuple[int, int]]:
        def run(conn: Connection) -> tuple[int, int]:
            branch = chat_rows.branch(conn, chat_id=chat_id, leaf_id=leaf)
            return len(branch), threading.get_ident()

        return run

    loop_thread = threading.get_ident()
    short_id, short_leaf, short = chat_of(LOOP_ROWS)
    long_id, long_leaf, long = chat_of(LOOP_ROWS + 1)
    assert await db.write(store(short_id, short)) == loop_thread
    assert await db.write(store(long_id, long)) != loop_thread
    assert await db.write(read(short_id, short_leaf)) == (LOOP_ROWS, loop_thread)
    length, thread = await db.write(read(long_id, long_leaf))
    assert (length, thread != loop_thread) == (LOOP_ROWS + 1, True)
