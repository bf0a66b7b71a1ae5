"""Alembic environment: patchbay runs migrations itself, on a connection it hands over."""

from __future__ import annotations

from alembic import context

from patchbay.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("patchbay runs migrations through patchbay.store.db.Database.migrate()")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
