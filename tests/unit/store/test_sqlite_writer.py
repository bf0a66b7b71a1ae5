"""SQLite's writer: batches on the event loop when the lock is free, in its thread when it is not
(without blocking the loop) or when an op has many rows to go through (a long chat), one op's
error failing only that op, and the WAL kept checkpointed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, make_url, text
from sqlalchemy.engine import Connection

from patchbay.errors import StoreUnavailable
from patchbay.ids import new_id
from patchbay.schemas.users import UserRead
from patchbay.store import chats as chat_rows
from patchbay.store import sqlite_writer
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


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """SQLite's write lock on `path`, held by another connection (another process, as it were)."""
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        locker.rollback()
        locker.close()


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


async def test_reads_wait_for_a_told_write_whose_caller_stopped_waiting(
    database: tuple[Database, UserRead],
) -> None:
    """A job's task cancelled while it waits for its told outcome's commit: the write still
    commits, and a read after the telling still sees it."""
    db, user = database

    async def conclude() -> None:
        renamed = db.write_soon(
            lambda conn: conn.execute(
                text("UPDATE users SET name = 'bea' WHERE id = :id"), {"id": user.id}
            ),
            within_s=0.2,
            told=True,
        )
        assert renamed is not None
        await renamed

    caller = asyncio.create_task(conclude())
    await asyncio.sleep(0.01)
    caller.cancel()
    await asyncio.gather(caller, return_exceptions=True)
    async with db.connect() as conn:
        name = (
            await conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user.id})
        ).scalar_one()
    assert name == "bea"


async def test_a_transaction_is_one_from_its_start_though_it_starts_with_a_savepoint(
    database: tuple[Database, UserRead],
) -> None:
    """`begin()` on SQLite: a user inserted (in a savepoint of its own) and then a failure roll
    back together; the driver alone would have committed the user at the savepoint's end."""
    db, _ann = database

    async def insert_then_fail() -> None:
        async with db.begin() as conn:
            await insert_user(conn, name="ghost", role="user", profile={})
            raise RuntimeError("a later step failed")

    with pytest.raises(RuntimeError, match="a later step"):
        await insert_then_fail()
    async with db.connect() as conn:
        names = (await conn.execute(text("SELECT name FROM users"))).scalars().all()
    assert names == ["ann"]


async def test_a_batch_in_the_thread_holds_the_lock_from_its_first_read(
    writer: SqliteWriter, path: Path
) -> None:
    def read_then_write(conn: Connection) -> tuple[bool, int, int]:
        leave_loop_past(conn, LOOP_ROWS + 1)  # a long chat: the batch runs in the thread
        before = conn.execute(text("SELECT count(*) FROM notes")).scalar_one()
        other = sqlite3.connect(path, timeout=0)  # another process, between the read and write
        try:
            other.execute("INSERT INTO notes (body) VALUES ('other')")
            other.commit()
            came_between = True
        except sqlite3.OperationalError:
            came_between = False
        finally:
            other.close()
        conn.execute(text("INSERT INTO notes (body) VALUES ('mine')"))
        return came_between, before, conn.execute(text("SELECT count(*) FROM notes")).scalar_one()

    came_between, before, after = await writer.submit(read_then_write)
    assert (came_between, after - before) == (False, 1)


async def test_a_locked_database_fails_a_batch_in_one_busy_timeout(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not once per op: each would wait out the lock again, and the writes queued behind them."""
    monkeypatch.setattr(sqlite_writer, "BUSY_TIMEOUT_MS", 200)
    writer = SqliteWriter(make_url(f"sqlite:///{path}"))
    try:
        with locked(path):
            started = time.monotonic()
            written = [writer.submit(insert(f"n{i}")) for i in range(10)]
            outcomes = await asyncio.gather(*written, return_exceptions=True)
            took = time.monotonic() - started
    finally:
        await writer.close()
    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes)
    assert took < 5 * 0.2  # eleven busy timeouts before


async def test_a_full_disk_is_an_outage(path: Path) -> None:
    writer = SqliteWriter(make_url(f"sqlite:///{path}"))

    def small_disk(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.execute("PRAGMA max_page_count=8")  # full, as SQLite sees it

    event.listen(writer._thread_engine, "connect", small_disk)
    event.listen(writer._loop_engine, "connect", small_disk)
    try:
        with pytest.raises(StoreUnavailable):
            await writer.submit(insert("x" * 200_000))
    finally:
        await writer.close()


async def test_closing_does_not_hold_the_loop_for_a_batch_waiting_for_the_lock(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write asked for after `close` fails at once; one the closing gave up on fails too."""
    monkeypatch.setattr(sqlite_writer, "CLOSE_WAIT_S", 0.2)
    writer = SqliteWriter(make_url(f"sqlite:///{path}"))
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.02)
            gaps.append(time.monotonic() - last)
            last = time.monotonic()

    ticker = asyncio.create_task(tick())
    try:
        with locked(path):  # by another process throughout
            waiting = writer.submit(insert("a"))
            await asyncio.sleep(0.1)  # in the thread, waiting for the lock
            late = writer.submit(insert("late"))  # queued behind it
            await writer.close()
            after = writer.submit(insert("after"))
            outcomes = await asyncio.wait_for(
                asyncio.gather(waiting, late, after, return_exceptions=True), 10
            )
    finally:
        ticker.cancel()
    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes)
    assert max(gaps) < 1.0  # the busy timeout is 5 s: the loop went on meanwhile


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


async def test_a_batch_of_many_ops_with_rows_to_go_through_runs_in_the_thread(
    writer: SqliteWriter, path: Path
) -> None:
    """Each under the limit, together over it (many turns in long chats at once)."""

    def op(conn: Connection) -> int:
        leave_loop_past(conn, LOOP_ROWS // 2)
        return threading.get_ident()

    assert await writer.submit(op) == threading.get_ident()  # alone: on the loop
    threads = await asyncio.gather(*(writer.submit(op) for _ in range(3)))
    assert threading.get_ident() not in threads
    assert await writer.submit(op) == threading.get_ident()  # and alone again: on the loop


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
