"""A `sqlite_utils.Database` that looks its schema up once, for the `llm` log writer.

`sqlite_utils` asks SQLite for the table and view names and a table's columns on every insert;
`llm`'s `LogStore` inserts into several tables per call, so most of the statements a logged call
cost were these lookups (~a quarter of the writer's CPU). The writer process owns its logs
database: once `llm`'s migrations have run, the schema changes only through this object, so the
answers are kept until a statement that changes the schema runs, or `forget_schema()` is called
(the writer does after a failed batch, in case another program migrated the file meanwhile).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlite_utils import Database
from sqlite_utils.db import Column, NoTable, Table

T = TypeVar("T")

_CHANGES_SCHEMA = re.compile(r"\s*(create|alter|drop)\b", re.IGNORECASE)


class SchemaCachedDatabase(Database):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._schema: dict[object, Any] = {}
        super().__init__(*args, **kwargs)

    def forget_schema(self) -> None:
        self._schema.clear()

    def _remembered(self, key: object, look_up: Callable[[], T]) -> T:
        if key not in self._schema:
            self._schema[key] = look_up()
        value: T = self._schema[key]
        return value

    def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        if _CHANGES_SCHEMA.match(sql):
            self.forget_schema()
        return super().execute(sql, parameters)

    def executescript(self, sql: str) -> Any:
        self.forget_schema()
        return super().executescript(sql)

    def table_names(self, fts4: bool = False, fts5: bool = False) -> list[str]:
        return self._remembered(
            ("tables", fts4, fts5), lambda: Database.table_names(self, fts4, fts5)
        )

    def view_names(self) -> list[str]:
        return self._remembered("views", super().view_names)

    def table(self, table_name: str, **kwargs: Any) -> Table:
        if table_name in self.view_names():
            raise NoTable(f"Table {table_name} is actually a view")
        kwargs.setdefault("strict", self.strict)
        return _Table(self, table_name, **kwargs)

    def columns_of(self, table: Table) -> list[Column]:
        columns: Sequence[Column] = self._remembered(
            ("columns", table.name),
            lambda: Table.columns.fget(table),  # type: ignore[attr-defined]
        )
        return list(columns)


class _Table(Table):
    db: SchemaCachedDatabase

    @property
    def columns(self) -> list[Column]:
        return self.db.columns_of(self)
