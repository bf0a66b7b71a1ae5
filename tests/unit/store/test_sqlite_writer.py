"""SQLite's writer: batches on the event loop when the lock is free, in its thread when it is not
(without blocking the loop), one op's error failing only that op, and the WAL kept checkpointed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.engine import Connection

from patchbay.store.sqlite_writer import CHECKPOINT_EVERY, SqliteWriter


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


async def test_the_wal_is_checkpointed_as_it_grows(writer: SqliteWriter, path: Path) -> None:
    commits = 3 * CHECKPOINT_EVERY
    for i in range(commits):
        await writer.submit(insert(f"{i:04d}" + "x" * 2000))
    with sqlite3.connect(path) as conn:
        _busy, wal_frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    # Each commit adds a frame or more: a WAL never checkpointed would hold them all.
    assert wal_frames < commits
    assert len(bodies(path)) == commits
