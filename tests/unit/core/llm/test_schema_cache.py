"""The log writer's database looks its schema up once, and again after the schema changes."""

from __future__ import annotations

from pathlib import Path

from patchbay.core.llm.schema_cache import SchemaCachedDatabase


def _statements(db: SchemaCachedDatabase) -> list[str]:
    seen: list[str] = []
    db.conn.set_trace_callback(seen.append)
    return seen


def test_inserts_after_the_first_ask_sqlite_nothing_about_the_schema(tmp_path: Path) -> None:
    db = SchemaCachedDatabase(tmp_path / "logs.db")
    db.table("turns").insert({"id": "a", "n": 1}, pk="id")
    seen = _statements(db)
    for number in range(5):
        db.table("turns").insert({"id": f"b{number}", "n": number}, replace=True)
    lookups = [sql for sql in seen if "sqlite_master" in sql or "PRAGMA" in sql]
    assert lookups == []
    assert db.table("turns").count == 6
    assert db.table("turns").pks == ["id"]


def test_a_schema_change_is_seen(tmp_path: Path) -> None:
    db = SchemaCachedDatabase(tmp_path / "logs.db")
    assert db.table_names() == []
    db.execute("create table later (id integer primary key, body text)")
    assert db.table_names() == ["later"]
    assert [column.name for column in db.table("later").columns] == ["id", "body"]
    db.execute("alter table later add column extra text")
    assert [column.name for column in db.table("later").columns] == ["id", "body", "extra"]


def test_forget_schema_sees_what_another_connection_changed(tmp_path: Path) -> None:
    db = SchemaCachedDatabase(tmp_path / "logs.db")
    db.table("turns").insert({"id": "a"}, pk="id")
    assert [column.name for column in db.table("turns").columns] == ["id"]
    other = SchemaCachedDatabase(tmp_path / "logs.db")
    other.execute("alter table turns add column model text")
    remembered = [column.name for column in db.table("turns").columns]
    assert remembered == ["id"]
    db.forget_schema()
    assert [column.name for column in db.table("turns").columns] == ["id", "model"]
