"""The database handle: one async engine per process, migrations on open, errors wrapped once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from patchbay.errors import StoreUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")
WriteOp = Callable[[Connection], T]

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


class Database:
    """An async engine plus `begin()`/`connect()` that turn driver failures into `StoreUnavailable`."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Every connection use ends in a commit or a rollback already (begin() and close()),
            # so the pool's own rollback on return is one more trip to SQLite's thread for nothing.
            kwargs.update(pool_reset_on_return=None)
        else:
            kwargs.update(pool_size=20, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps in its
        # busy handler; queueing writers here instead keeps throughput up under concurrency.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._pending: list[tuple[WriteOp[Any], asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._sync_engine: Engine | None = None
        self._writer_thread: ThreadPoolExecutor | None = None
        self._writer_conn: Connection | None = None  # the writer thread's own, kept open
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            self._sync_engine = create_engine(
                self.engine.url.set(drivername="sqlite"), pool_reset_on_return=None
            )
            event.listen(self._sync_engine, "connect", _sqlite_pragmas)
            self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")

    async def migrate(self) -> None:
        """Bring the schema to the newest revision; never drops or resets anything."""
        async with self.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "head"))

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed on success."""
        try:
            if self._write_lock is None:
                async with self.engine.begin() as conn:
                    yield conn
            else:
                async with self._write_lock, self.engine.begin() as conn:
                    yield conn
        except (TimeoutError, OSError, DBAPIError) as exc:
            if _is_outage(exc):
                raise _unavailable(exc) from exc
            raise

    async def write(self, op: WriteOp[T]) -> T:
        """Run the synchronous `op` in a write transaction; return its result once committed.

        On SQLite, writes go to one writer thread with a plain `sqlite3` connection, and those that
        arrive together share one transaction (group commit): one thread hop and one commit for
        many turns, where the async driver would hop to its thread for every statement. If a
        shared transaction fails, each op runs again alone, so one op's error never fails another.
        """
        queued = self.write_soon(op)
        if queued is None:
            async with self.begin() as conn:
                return await conn.run_sync(op)
        return await queued

    def write_soon(self, op: WriteOp[T]) -> asyncio.Future[T] | None:
        """Queue `op` for the SQLite writer now, before any write asked for later; its future
        has the result once committed. None on PostgreSQL, where writes are not queued."""
        if self._writer_thread is None:
            return None
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        return future

    async def _write_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            ops = [op for op, _future in batch]
            outcomes = await loop.run_in_executor(self._writer_thread, self._run_batch, ops)
            for (_op, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _run_batch(self, ops: list[WriteOp[Any]]) -> list[tuple[bool, Any]]:
        """In the writer thread: all ops in one transaction, or each alone if that fails."""
        try:
            with self._writer_transaction() as conn:
                return [(True, op(conn)) for op in ops]
        except Exception:  # noqa: BLE001 - isolate the failing op by running each alone
            return [self._run_alone(op) for op in ops]

    def _run_alone(self, op: WriteOp[Any]) -> tuple[bool, Any]:
        try:
            with self._writer_transaction() as conn:
                return True, op(conn)
        except (TimeoutError, OSError, DBAPIError) as exc:
            return False, _unavailable(exc) if _is_outage(exc) else exc
        except Exception as exc:  # noqa: BLE001 - handed to the caller waiting on the future
            return False, exc

    @contextmanager
    def _writer_transaction(self) -> Iterator[Connection]:
        """In the writer thread: a transaction on its connection, which stays open between
        batches (checking one out of the pool per batch cost more than most batches' SQL). After
        a failure the connection is dropped, so the next batch starts on a fresh one."""
        assert self._sync_engine is not None  # noqa: S101 - set whenever the thread is
        if self._writer_conn is None:
            self._writer_conn = self._sync_engine.connect()
        conn = self._writer_conn
        try:
            with conn.begin():
                yield conn
        except BaseException:
            self._drop_writer_connection()
            raise

    def _drop_writer_connection(self) -> None:
        if self._writer_conn is not None:
            conn, self._writer_conn = self._writer_conn, None
            with suppress(Exception):  # a broken connection may fail to close; it is gone anyway
                conn.close()

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads."""
        try:
            async with self.engine.connect() as conn:
                yield conn
        except (TimeoutError, OSError, DBAPIError) as exc:
            if _is_outage(exc):
                raise _unavailable(exc) from exc
            raise

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.wait({self._writer}, timeout=10)
        if self._writer_thread is not None:
            self._writer_thread.submit(self._drop_writer_connection)  # in its own thread
            self._writer_thread.shutdown(wait=True)
        if self._sync_engine is not None:
            self._sync_engine.dispose()
        await self.engine.dispose()


_OUTAGE_HINTS = (
    "locked",
    "unable to open",
    "disk i/o",
    "connect",
    "closed",
    "terminat",
    "shutdown",
)


def _is_outage(exc: BaseException) -> bool:
    """Whether an error means the database cannot be reached now (retry), not a bug (raise)."""
    if isinstance(exc, TimeoutError | OSError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    text = str(exc).lower()
    return isinstance(exc, OperationalError | InterfaceError) and any(
        h in text for h in _OUTAGE_HINTS
    )


def _unavailable(exc: BaseException) -> StoreUnavailable:
    logger.warning("database unavailable: %s", str(exc).splitlines()[0][:200])
    return StoreUnavailable("the database is unavailable right now; try again shortly")
