"""The hot statements of a turn, run straight on SQLite's driver.

Measured here, SQLAlchemy's execution machinery (an execution context, parameter processing and a
result object per statement) cost more CPU than SQLite itself for the six statements that store a
turn and its answer, and that time is taken from the core's event loop through the GIL. A
`Prepared` statement is compiled once per set of parameter names; a run converts the parameters
with the column types' own bind processors (the same text SQLAlchemy would store, but for None,
stored as SQL NULL where SQLAlchemy would store a JSON column's None as `null`) and executes on
the connection's `sqlite3` cursor, inside the transaction the `Connection` holds. Driver errors
are raised as SQLAlchemy's, as `Connection.execute` raises them. Any other driver (PostgreSQL,
where a statement is a network round trip anyway) runs the statement through SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.sql.dml import UpdateBase

Params = Mapping[str, Any]
_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the parameters in the order of the statement's placeholders
    processors: tuple[_Processor, ...]
    fixed: Mapping[str, Any]  # values the statement carries itself (literals in its clauses)

    def row(self, params: Params) -> tuple[Any, ...]:
        values = []
        for name, process in zip(self.names, self.processors, strict=True):
            value = params[name] if name in params else self.fixed[name]
            values.append(value if process is None or value is None else process(value))
        return tuple(values)


class Prepared:
    """An INSERT or UPDATE run on SQLite's driver directly (see the module's docstring)."""

    def __init__(self, statement: UpdateBase) -> None:
        self.statement = statement
        self._compiled: dict[frozenset[str], _Compiled] = {}

    def run(self, conn: Connection, params: Params | Sequence[Params]) -> None:
        """Run once, or once per row for a sequence of rows (all with the same names)."""
        rows = [params] if isinstance(params, Mapping) else list(params)
        if not rows:
            return
        if conn.dialect.driver != "pysqlite":
            conn.execute(self.statement, rows if len(rows) > 1 else rows[0])
            return
        compiled = self._compile(conn, rows[0])
        _execute(conn, compiled.sql, [compiled.row(row) for row in rows], fetch=False)

    def first(self, conn: Connection, params: Params) -> tuple[Any, ...] | None:
        """Run once and return the first row it returns (RETURNING), or None."""
        if conn.dialect.driver != "pysqlite":
            row = conn.execute(self.statement, params).first()
            return None if row is None else tuple(row)
        compiled = self._compile(conn, params)
        found = _execute(conn, compiled.sql, [compiled.row(params)], fetch=True)
        return tuple(found[0]) if found else None

    def _compile(self, conn: Connection, params: Params) -> _Compiled:
        keys = frozenset(params)
        compiled = self._compiled.get(keys)
        if compiled is None:
            compiled = self._compiled[keys] = _compile(self.statement, conn, keys)
        return compiled


def _compile(statement: UpdateBase, conn: Connection, keys: frozenset[str]) -> _Compiled:
    dialect = conn.dialect
    compiled = statement.compile(dialect=dialect, column_keys=sorted(keys))
    names = tuple(compiled.positiontup or ())
    computed = {c.key for c in [*compiled.insert_prefetch, *compiled.update_prefetch]}
    fixed = {}
    for name in names:
        if name in keys:
            continue
        bind = compiled.binds[name]
        if name in computed or bind.required or bind.callable is not None:
            # A column default SQLAlchemy would compute, or a value only known at run time:
            # not for this path; give the value in the parameters.
            raise ValueError(f"{statement}: no value for {name!r}")
        fixed[name] = bind.value
    processors = tuple(
        compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    return _Compiled(str(compiled), names, processors, fixed)


def _execute(
    conn: Connection, sql: str, values: list[tuple[Any, ...]], *, fetch: bool
) -> list[Any]:
    """Run `sql` once per row of `values` on the connection's own cursor; with `fetch`, the rows
    it returns (read to the end: the statement is done only then)."""
    dbapi_connection = conn.connection.dbapi_connection
    if dbapi_connection is None:  # pragma: no cover - a live Connection always has one
        raise RuntimeError("the connection is closed")
    cursor = dbapi_connection.cursor()
    try:
        if len(values) == 1:
            cursor.execute(sql, values[0])
        else:
            cursor.executemany(sql, values)
        return list(cursor.fetchall()) if fetch else []
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _wrapped(conn, sql, values, exc) from exc
    finally:
        cursor.close()


def _wrapped(
    conn: Connection, sql: str, values: list[tuple[Any, ...]], exc: Exception
) -> StatementError:
    dialect = conn.dialect
    return DBAPIError.instance(
        sql,
        values if len(values) > 1 else values[0],
        exc,
        dialect.loaded_dbapi.Error,
        dialect=dialect,
        ismulti=len(values) > 1,
    )
