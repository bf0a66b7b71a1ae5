"""`Prepared` statements store exactly what SQLAlchemy's own execution stores, on SQLite's driver
and (through SQLAlchemy) on PostgreSQL's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.types import JSON

from patchbay.store.prepared import Prepared
from patchbay.store.tables import UTCDateTime
from tests.support.databases import postgres_database

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("data", JSON, nullable=False),
    Column("count", Integer, nullable=False),
    Column("note", String(50)),
    Column("kind", String(10), default="plain"),
)
INSERT = things.insert()
UPDATE = update(things).where(things.c.id == bindparam("b_id"))
BUMP = (
    update(things)
    .where(things.c.id == bindparam("b_id"), things.c.count < 100)
    .values(count=things.c.count + 1, note="bumped")
    .returning(things.c.count)
)
AT = datetime(2026, 12, 6, 16, 21, 15, 204430, tzinfo=UTC)


def row(id_: str, **extra: object) -> dict[str, object]:
    values = {"id": id_, "at": AT, "data": {"a": [1, "é"]}, "count": 1, "note": None}
    return {**values, "kind": "plain", **extra}


Check = Callable[[Connection], None]


@pytest.fixture(params=["sqlite", "postgresql"])
def on(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[Check], None]]:
    """Runs a check with a connection: SQLite's through `sqlite3` (the path `Prepared` takes
    itself), PostgreSQL's through asyncpg under `run_sync` (the one it leaves to SQLAlchemy)."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path}/things.db")
        metadata.create_all(engine)

        def on_sqlite(check: Check) -> None:
            with engine.connect() as conn:
                check(conn)

        yield on_sqlite
        engine.dispose()
        return
    with postgres_database() as url:
        loop = asyncio.new_event_loop()
        async_engine = create_async_engine(url)

        async def run(check: Check) -> None:
            async with async_engine.connect() as conn:
                await conn.run_sync(check)

        loop.run_until_complete(_create(async_engine))

        def on_postgresql(check: Check) -> None:
            loop.run_until_complete(run(check))

        try:
            yield on_postgresql
        finally:
            loop.run_until_complete(async_engine.dispose())
            loop.close()


async def _create(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


def stored(conn: Connection, id_: str) -> tuple[object, ...]:
    raw = conn.execute(text("SELECT at, data, count, note FROM things WHERE id = :id"), {"id": id_})
    found = raw.first()
    assert found is not None
    return tuple(found)


def test_a_prepared_insert_stores_what_sqlalchemy_stores(on: Callable[[Check], None]) -> None:
    def check(conn: Connection) -> None:
        with conn.begin():
            conn.execute(INSERT, row("plain"))
            Prepared(INSERT).run(conn, row("prepared"))
            Prepared(INSERT).run(conn, [row("many-1"), row("many-2", count=7)])
        assert stored(conn, "prepared") == stored(conn, "plain")
        assert stored(conn, "many-1") == stored(conn, "plain")
        assert stored(conn, "many-2")[2] == 7

    on(check)


def test_a_prepared_update_sets_only_the_given_columns(on: Callable[[Check], None]) -> None:
    def check(conn: Connection) -> None:
        statement = Prepared(UPDATE)
        with conn.begin():
            Prepared(INSERT).run(conn, [row("a"), row("b")])
            statement.run(conn, {"b_id": "a", "note": "first", "count": 2})
            statement.run(conn, {"b_id": "b", "data": {"b": None}})  # another set of names
        assert stored(conn, "a")[2:] == (2, "first")
        assert stored(conn, "b")[2:] == (1, None)
        assert conn.execute(things.select().where(things.c.id == "b")).one().data == {"b": None}

    on(check)


def test_returning_gives_the_row_or_none(on: Callable[[Check], None]) -> None:
    def check(conn: Connection) -> None:
        bump = Prepared(BUMP)
        with conn.begin():
            Prepared(INSERT).run(conn, [row("low"), row("high", count=100)])
            assert bump.first(conn, {"b_id": "low"}) == (2,)
            assert bump.first(conn, {"b_id": "high"}) is None  # its WHERE does not hold
            assert bump.first(conn, {"b_id": "nobody"}) is None
        assert stored(conn, "low")[2:] == (2, "bumped")

    on(check)


def test_it_runs_inside_the_connections_transaction(on: Callable[[Check], None]) -> None:
    def check(conn: Connection) -> None:
        transaction = conn.begin()
        Prepared(INSERT).run(conn, row("rolled-back"))
        transaction.rollback()
        assert conn.exec_driver_sql("SELECT count(*) FROM things").scalar() == 0

    on(check)


def test_driver_errors_are_sqlalchemys(on: Callable[[Check], None]) -> None:
    def check(conn: Connection) -> None:
        with pytest.raises(IntegrityError), conn.begin():
            Prepared(INSERT).run(conn, [row("twice"), row("twice")])
        with pytest.raises(IntegrityError), conn.begin():
            Prepared(INSERT).run(conn, row("no-count", count=None))

    on(check)


def test_a_default_sqlalchemy_would_compute_is_refused(tmp_path: Path) -> None:
    """On SQLite's driver: every value must be given (the turn's rows are whole)."""
    engine = create_engine(f"sqlite:///{tmp_path}/things.db")
    metadata.create_all(engine)
    without_kind = {k: v for k, v in row("x").items() if k != "kind"}
    with engine.connect() as conn, pytest.raises(ValueError, match="kind"):
        Prepared(INSERT).run(conn, without_kind)
    engine.dispose()
