"""SQLite's writes: queued in order, those that arrive together committed as one transaction.

A batch runs on the event loop's own connection when SQLite's write lock is free (it nearly always
is: on embedded defaults the core is the database's one writer; workers sharing the file take it now
and then), and in a writer thread that waits for the lock when it is not. Measured here, a handoff
to a thread and back cost more than the batch's SQL and commit (about 0.15 ms idle and 0.5 ms on a
busy core, against 0.2 ms of work), twice per turn; and a thread gains little for work that is
mostly Python holding the GIL anyway. The loop's connection never waits: it takes the lock at once
or not at all (`BEGIN IMMEDIATE` with no busy timeout), and never checkpoints (the fsyncs of WAL
mode happen there), so the writer thread checkpoints every `CHECKPOINT_EVERY` commits instead. An op
with many rows to go through (a long chat's messages) says so with `leave_loop_past`, and its batch
runs in the thread: there the loop goes on serving meanwhile, as the thread lets go of the GIL at
every call into SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from sqlalchemy import URL, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from patchbay.errors import StoreUnavailable
from patchbay.store.outages import is_outage, unavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")
WriteOp = Callable[[Connection], T]
Outcome = tuple[bool, Any]  # (True, result) or (False, the exception)
# An op, the caller's future, and, for an op told before its commit, a future of the writer's
# own that `settled` waits for (the caller's may be cancelled while the op still commits).
_Pending = tuple[WriteOp[Any], "asyncio.Future[Any]", "asyncio.Future[None] | None"]

CHECKPOINT_EVERY = 200  # commits on the loop's connection between WAL checkpoints
BUSY_TIMEOUT_MS = 5000  # how long a connection but the loop's waits for a lock
RESTART_WAIT_MS = 100  # how long a checkpoint waits to start the WAL over (see `_checkpoint_wal`)
LOOP_ROWS = 200  # a batch with more rows than this to go through runs in the writer thread
CLOSE_WAIT_S = 10.0  # how long `close` waits for the writes queued before it
_ON_LOOP = "patchbay_on_loop"  # marks the loop's connection, in its `info`
_ROWS = "patchbay_rows"  # the rows its batch's ops said they go through, in its `info`


class _LongForTheLoop(Exception):
    """A batch on the loop's connection has more than `LOOP_ROWS` rows to go through."""


def runs_on_loop(conn: Connection) -> bool:
    """Whether `conn` is the event loop's connection (see `leave_loop_past`)."""
    return bool(conn.info.get(_ON_LOOP))


def leave_loop_past(conn: Connection, rows: int) -> None:
    """For an op about to go through `rows` rows: on the loop's connection, once its batch's ops
    have said more than `LOOP_ROWS` in all (one long chat, or many turns at once), the batch
    stops there (rolled back), to run again in the writer thread."""
    if runs_on_loop(conn):
        rows += conn.info.get(_ROWS, 0)
        conn.info[_ROWS] = rows
        if rows > LOOP_ROWS:
            raise _LongForTheLoop


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def _thread_pragmas(dbapi_connection: Any, record: Any) -> None:
    sqlite_pragmas(dbapi_connection, record)
    # The driver begins nothing (it would begin only at a batch's first write, leaving the reads
    # before it to see another process's writes); `_begin_immediate` does, taking the lock.
    dbapi_connection.isolation_level = None


def _loop_pragmas(dbapi_connection: Any, record: Any) -> None:
    _thread_pragmas(dbapi_connection, record)
    record.info[_ON_LOOP] = True
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def _begin_immediate(conn: Connection) -> None:
    # On the driver itself: through `exec_driver_sql` it cost twice the BEGIN (7 µs, measured).
    driver = conn.connection.dbapi_connection
    if driver is None:  # pragma: no cover - a live Connection always has one
        raise RuntimeError("the connection is closed")
    try:
        driver.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:  # as SQLAlchemy raises a statement's (this is an event's)
        raise DBAPIError.instance("BEGIN IMMEDIATE", (), exc, sqlite3.Error) from exc


class SqliteWriter:
    """Runs write operations (functions of a SQLAlchemy `Connection`) in order, each batch in
    one transaction; if a batch fails, each of its operations runs again alone in the writer
    thread, so one operation's error never fails another."""

    def __init__(self, url: URL) -> None:
        url = url.set(drivername="sqlite")
        self._thread_engine = create_engine(url, pool_reset_on_return=None)
        event.listen(self._thread_engine, "connect", _thread_pragmas)
        event.listen(self._thread_engine, "begin", _begin_immediate)
        self._loop_engine: Engine = create_engine(url, pool_reset_on_return=None)
        event.listen(self._loop_engine, "connect", _loop_pragmas)
        event.listen(self._loop_engine, "begin", _begin_immediate)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._thread_conn: Connection | None = None  # the thread's own, kept open
        self._loop_conn: Connection | None = None
        self._pending: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None
        self._commits = 0  # on the loop's connection since the last checkpoint
        self._checkpoint: Future[None] | None = None
        # Set by the writer thread while it starts the WAL over: batches go to the thread then.
        self._diverted = False
        self._told: set[asyncio.Future[None]] = set()  # see `submit(told=True)`
        self._closed = False

    def submit(
        self, op: WriteOp[T], *, within_s: float | None = None, told: bool = False
    ) -> asyncio.Future[T]:
        """Queue `op` before any write submitted later; the future has its result once
        committed.

        `within_s`: the op may wait that long for company, so it shares the next write's
        transaction instead of a commit of its own. `told`: what the op stores is told (to
        listeners, to a client) before it is committed, so it starts only once the tasks ready
        now have run (those the telling wakes), and reads wait for its commit (see `settled`).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._closed:
            future.set_exception(StoreUnavailable("the database is closed"))
            return future
        settled = None
        if told:
            settled = loop.create_future()
            self._told.add(settled)
            settled.add_done_callback(self._told.discard)
        self._pending.append((op, future, settled))
        if within_s is not None:
            loop.call_later(within_s, self._start)
        elif told:
            loop.call_soon(self._start)
        else:
            self._start()
        return future

    async def settled(self) -> None:
        """Return once every write submitted with `told=True` so far is committed (or failed):
        a read after it sees what was told."""
        if self._told:
            await asyncio.wait(set(self._told))

    def _start(self) -> None:
        """Write what is pending, unless a batch is being written (it takes them next)."""
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._write_batches())

    async def _write_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            ops = [op for op, _future, _settled in batch]
            outcomes = None if self._diverted else self._run_on_loop(ops)
            if outcomes is None:
                try:
                    outcomes = await loop.run_in_executor(self._thread, self._run_batch, ops)
                except RuntimeError as exc:  # the thread was shut down: `close` gave up on it
                    outcomes = [(False, unavailable(exc))] * len(ops)
            for (_op, future, settled), (ok, value) in zip(batch, outcomes, strict=True):
                if settled is not None and not settled.done():
                    settled.set_result(None)
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _run_on_loop(self, ops: list[WriteOp[Any]]) -> list[Outcome] | None:
        """All ops in one transaction on the loop's connection; None, with nothing written, when
        the write lock is taken or anything fails: the writer thread does the batch then."""
        try:
            if self._loop_conn is None:
                self._loop_conn = self._loop_engine.connect()
            self._loop_conn.info[_ROWS] = 0
            with self._loop_conn.begin():
                results = [(True, op(self._loop_conn)) for op in ops]
        except _LongForTheLoop:  # rolled back; the connection is as good as before
            return None
        except Exception:  # noqa: BLE001 - the writer thread runs them again (and tells any error)
            _close(self._loop_conn)
            self._loop_conn = None
            return None
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY and (
            self._checkpoint is None or self._checkpoint.done()
        ):
            self._commits = 0
            self._checkpoint = self._thread.submit(self._checkpoint_wal)
        return results

    def _run_batch(self, ops: list[WriteOp[Any]]) -> list[Outcome]:
        """In the writer thread: all ops in one transaction, or each alone if that fails (but
        for an outage, which fails them all alike: each would wait out the lock again)."""
        try:
            with self._thread_transaction() as conn:
                return [(True, op(conn)) for op in ops]
        except (TimeoutError, OSError, DBAPIError) as exc:
            if is_outage(exc):
                return [(False, unavailable(exc))] * len(ops)
            return [self._run_alone(op) for op in ops]
        except Exception:  # noqa: BLE001 - isolate the failing op by running each alone
            return [self._run_alone(op) for op in ops]

    def _run_alone(self, op: WriteOp[Any]) -> Outcome:
        try:
            with self._thread_transaction() as conn:
                return True, op(conn)
        except (TimeoutError, OSError, DBAPIError) as exc:
            return False, unavailable(exc) if is_outage(exc) else exc
        except Exception as exc:  # noqa: BLE001 - handed to the caller waiting on the future
            return False, exc

    @contextmanager
    def _thread_transaction(self) -> Iterator[Connection]:
        """In the writer thread: a transaction on its connection, which stays open between
        batches (checking one out of the pool per batch cost more than most batches' SQL). After
        a failure the connection is dropped, so the next batch starts on a fresh one."""
        conn = self._thread_connection()
        try:
            with conn.begin():
                yield conn
        except BaseException:
            _close(self._thread_conn)
            self._thread_conn = None
            raise

    def _thread_connection(self) -> Connection:
        """In the writer thread: its connection, opened when it has none."""
        if self._thread_conn is None:
            self._thread_conn = self._thread_engine.connect()
        return self._thread_conn

    def _checkpoint_wal(self) -> None:
        """In the writer thread: copy the WAL's pages into the database file, and have the next
        commit write the WAL from its start again.

        SQLite starts the WAL over only at a commit that finds every frame of it copied. A
        passive checkpoint never gets there while the loop goes on committing: the frames of the
        commits made during it are left over, and the WAL grew by every commit for as long as the
        core ran (120 KB per turn, measured), each write growing the file. So the passive one
        copies the bulk while the loop writes on; then the loop's batches come to this thread
        (behind this checkpoint) while a RESTART checkpoint copies what is left and waits, at
        most `RESTART_WAIT_MS`, for readers of the WAL to finish. If it cannot finish in time,
        the next checkpoint tries again.
        """
        try:
            # On the driver: through SQLAlchemy, the statements would begin a transaction first
            # (`_begin_immediate`), in which no checkpoint can run.
            driver = self._thread_connection().connection.dbapi_connection
            if driver is None:  # pragma: no cover - a live Connection always has one
                raise RuntimeError("the connection is closed")
            driver.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._diverted = True
            try:
                driver.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
                driver.execute("PRAGMA wal_checkpoint(RESTART)")
            finally:
                self._diverted = False
                driver.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except (sqlite3.Error, DBAPIError, OSError) as exc:  # the next one tries again
            logger.warning("WAL checkpoint failed: %s", str(exc).splitlines()[0][:200])
            _close(self._thread_conn)
            self._thread_conn = None

    async def close(self) -> None:
        """Write what is queued (writes waiting for company too), then close; a write asked for
        later fails with `StoreUnavailable`."""
        self._start()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=CLOSE_WAIT_S)
        self._closed = True
        _close(self._loop_conn)
        self._loop_conn = None
        self._thread.submit(self._close_thread_connection)  # in its own thread
        # A batch still waiting there for the lock ends within its busy timeout: wait for it
        # off the loop, which goes on serving meanwhile.
        await asyncio.to_thread(self._thread.shutdown, wait=True)
        self._thread_engine.dispose()
        self._loop_engine.dispose()

    def _close_thread_connection(self) -> None:
        _close(self._thread_conn)
        self._thread_conn = None


def _close(conn: Connection | None) -> None:
    """Close `conn` if there is one; a broken connection may fail to close, it is gone anyway."""
    if conn is not None:
        with suppress(Exception):
            conn.close()
