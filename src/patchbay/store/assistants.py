"""Named assistants (templates) in the database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from patchbay.errors import AssistantNotFound, Conflict
from patchbay.ids import new_id
from patchbay.schemas.assistants import AssistantRead, AssistantTemplate
from patchbay.store.tables import assistants


def _read(row: object) -> AssistantRead:
    return AssistantRead.model_validate(row, from_attributes=True)


async def insert_assistant(
    conn: AsyncConnection, *, name: str, description: str | None, template: AssistantTemplate
) -> AssistantRead:
    now = datetime.now(UTC)
    row = {
        "id": new_id(),
        "name": name,
        "description": description,
        "template": template.model_dump(mode="json", exclude_none=True),
        "created_at": now,
        "updated_at": now,
    }
    try:
        async with conn.begin_nested():
            await conn.execute(assistants.insert().values(**row))
    except IntegrityError as exc:
        raise Conflict(f"an assistant named {name!r} already exists") from exc
    return AssistantRead.model_validate(row)


async def get_assistant(conn: AsyncConnection, name: str) -> AssistantRead:
    row = (await conn.execute(select(assistants).where(assistants.c.name == name))).first()
    if row is None:
        raise AssistantNotFound(f"no assistant named {name!r}; GET /v1/assistants lists them")
    return _read(row)


async def list_assistants(conn: AsyncConnection) -> list[AssistantRead]:
    return [
        _read(row) for row in await conn.execute(select(assistants).order_by(assistants.c.name))
    ]


async def update_assistant(
    conn: AsyncConnection, name: str, values: dict[str, object]
) -> AssistantRead:
    if values:
        result = await conn.execute(
            update(assistants)
            .where(assistants.c.name == name)
            .values(**values, updated_at=datetime.now(UTC))
        )
        if result.rowcount == 0:
            raise AssistantNotFound(f"no assistant named {name!r}")
    return await get_assistant(conn, name)


async def delete_assistant(conn: AsyncConnection, name: str) -> None:
    result = await conn.execute(assistants.delete().where(assistants.c.name == name))
    if result.rowcount == 0:
        raise AssistantNotFound(f"no assistant named {name!r}")
