"""The database handle: one async engine per process, migrations on open, errors wrapped once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from patchbay.errors import InvalidRequest
from patchbay.store.outages import is_outage, unavailable
from patchbay.store.sqlite_writer import SqliteWriter, WriteOp, sqlite_pragmas

T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"


def _store_error(exc: Exception) -> Exception:
    """What a caller is told of a driver's error: an outage, a value the database refuses to
    hold (PostgreSQL and a NUL character, or a number past 64 bits), or the error itself."""
    if is_outage(exc):
        return unavailable(exc)
    code = str(getattr(getattr(exc, "orig", None), "sqlstate", None) or "")
    if isinstance(exc, DataError) or code.startswith("22"):  # SQLSTATE class 22: data exception
        return InvalidRequest("the request holds a value the database cannot store")
    return exc


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
        self._writer: SqliteWriter | None = None
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", sqlite_pragmas)
            self._writer = SqliteWriter(self.engine.url)

    async def migrate(self) -> None:
        """Bring the schema to the newest revision; never drops or resets anything.

        On SQLite, not in one transaction: a migration that rebuilds a table turns foreign keys
        off first, which SQLite ignores inside a transaction (and would then delete the rows
        that refer to the table it drops)."""
        async with self._transaction(atomic=False) as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "head"))

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed on success; on SQLite, once the writes told
        before their commit are in (as for `connect`)."""
        async with self._transaction(atomic=True) as conn:
            yield conn

    @asynccontextmanager
    async def _transaction(self, *, atomic: bool) -> AsyncIterator[AsyncConnection]:
        """`atomic`, on SQLite: from a BEGIN IMMEDIATE of its own. The driver would begin only
        at the first INSERT, UPDATE or DELETE; a SAVEPOINT before it would be a transaction of
        its own, committed when released, whatever failed after it."""
        if self._writer is not None:
            await self._writer.settled()
        try:
            if self._write_lock is None:
                async with self.engine.begin() as conn:
                    yield conn
            else:
                async with self._write_lock, self.engine.begin() as conn:
                    if atomic:
                        await conn.exec_driver_sql("BEGIN IMMEDIATE")
                    yield conn
        except (TimeoutError, OSError, DBAPIError) as exc:
            told = _store_error(exc)
            if told is exc:
                raise
            raise told from exc

    async def write(self, op: WriteOp[T]) -> T:
        """Run the synchronous `op` in a write transaction; return its result once committed.

        On SQLite, writes are queued and those that arrive together share one transaction (group
        commit; see `sqlite_writer`), where the async driver would hop to its thread for every
        statement.
        """
        queued = self.write_soon(op)
        if queued is None:
            async with self.begin() as conn:
                return await conn.run_sync(op)
        return await queued

    def write_soon(
        self, op: WriteOp[T], *, within_s: float | None = None, told: bool = False
    ) -> asyncio.Future[T] | None:
        """Queue `op` for the SQLite writer now, before any write asked for later; its future
        has the result once committed. `within_s`: it may wait that long to share the next
        write's commit. `told`: what it stores is told before it is committed; reads through
        `connect()` wait for it. None on PostgreSQL, where writes are not queued."""
        if self._writer is None:
            return None
        return self._writer.submit(op, within_s=within_s, told=told)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads; on SQLite, once the writes told before their commit are in."""
        if self._writer is not None:
            await self._writer.settled()
        try:
            async with self.engine.connect() as conn:
                yield conn
        except (TimeoutError, OSError, DBAPIError) as exc:
            told = _store_error(exc)
            if told is exc:
                raise
            raise told from exc

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        await self.engine.dispose()
