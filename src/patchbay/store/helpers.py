"""Registered helpers in the database: their manifests, switches and allow lists."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from patchbay.errors import HelperNotFound
from patchbay.schemas.helpers import HelperManifest
from patchbay.store.tables import helpers


@dataclass(frozen=True, slots=True)
class HelperRecord:
    name: str
    manifest: HelperManifest
    host: str  # whose name it is: the host of its base URL, loopback names as one
    enabled: bool
    allowed_roles: list[str] | None
    allowed_users: list[str] | None
    registered_at: datetime
    last_seen: datetime | None


def _record(row: object) -> HelperRecord:
    values = dict(row._mapping)  # type: ignore[attr-defined]
    values["manifest"] = HelperManifest.model_validate(values["manifest"])
    return HelperRecord(**values)


async def list_helpers(conn: AsyncConnection) -> list[HelperRecord]:
    return [_record(row) for row in await conn.execute(select(helpers).order_by(helpers.c.name))]


async def find_helper(conn: AsyncConnection, name: str) -> HelperRecord | None:
    row = (await conn.execute(select(helpers).where(helpers.c.name == name))).first()
    return None if row is None else _record(row)


def _held_by(hosts: Collection[str]) -> ColumnElement[bool]:
    """A helper whose name belongs to one of `hosts`, and no MCP server (those are an admin's)."""
    protocol = func.coalesce(helpers.c.manifest["protocol"].as_string(), "http")
    return and_(helpers.c.host.in_(hosts), protocol != "mcp")


def _named(name: str, held_by: Collection[str] | None) -> ColumnElement[bool]:
    """The helper `name`; given `held_by`, only if held by one of them and no MCP server."""
    found = helpers.c.name == name
    return found if held_by is None else and_(found, _held_by(held_by))


async def upsert_helper(
    conn: AsyncConnection,
    manifest: HelperManifest,
    now: datetime,
    *,
    host: str,
    held_by: Collection[str] | None = None,
) -> bool:
    """Register a helper of `host`, or take its new manifest; its switches and allow lists stay.
    One statement, so replicas registering one new name at once each succeed (an UPDATE, then an
    INSERT where it found nothing, let two of them insert), and two hosts registering it at once
    cannot both have it. An entry there is replaced only if it is held by one of `held_by` and
    no MCP server; by anyone's if `held_by` is None (an admin): False when it was kept."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    insert = dialect.insert(helpers).values(
        name=manifest.name,
        manifest=manifest.model_dump(mode="json"),
        host=host,
        enabled=True,
        allowed_roles=None,
        allowed_users=None,
        registered_at=now,
        last_seen=now,
    )
    new = insert.excluded
    result = await conn.execute(
        insert.on_conflict_do_update(
            index_elements=[helpers.c.name],
            set_={
                "manifest": new.manifest,
                "host": new.host,
                "registered_at": new.registered_at,
                "last_seen": new.last_seen,
            },
            where=None if held_by is None else _held_by(held_by),
        )
    )
    return bool(result.rowcount)


async def touch_helper(
    conn: AsyncConnection, name: str, now: datetime, *, held_by: Collection[str] | None = None
) -> bool:
    """Mark a helper seen; given `held_by`, only one held by one of them and no MCP server."""
    result = await conn.execute(update(helpers).where(_named(name, held_by)).values(last_seen=now))
    return bool(result.rowcount)


async def update_helper(conn: AsyncConnection, name: str, values: dict[str, object]) -> None:
    result = await conn.execute(update(helpers).where(helpers.c.name == name).values(**values))
    if result.rowcount == 0:
        raise HelperNotFound(f"no helper named {name!r}; GET /v1/helpers lists them")


async def delete_helper(
    conn: AsyncConnection, name: str, *, held_by: Collection[str] | None = None
) -> bool:
    """Remove a helper; given `held_by`, only one held by one of them and no MCP server."""
    result = await conn.execute(helpers.delete().where(_named(name, held_by)))
    return bool(result.rowcount)
