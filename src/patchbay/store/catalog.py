"""Providers and models in the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from patchbay.errors import Conflict, ModelNotFound, ProviderNotFound
from patchbay.ids import new_id
from patchbay.store.tables import models, providers


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    id: str
    name: str
    kind: str
    api_base: str | None
    api_key_encrypted: str | None
    api_key_env: str | None
    options: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ModelRecord:
    id: str
    name: str
    provider_id: str
    upstream_model: str
    options: dict[str, Any]
    is_default: bool
    created_at: datetime


async def insert_provider(conn: AsyncConnection, **values: Any) -> ProviderRecord:
    record = ProviderRecord(id=new_id(), created_at=datetime.now(UTC), **values)
    try:
        async with conn.begin_nested():
            await conn.execute(
                providers.insert().values(
                    **{k: getattr(record, k) for k in ProviderRecord.__slots__}
                )
            )
    except IntegrityError as exc:
        raise Conflict(f"a provider named {record.name!r} already exists") from exc
    return record


async def list_providers(conn: AsyncConnection) -> list[ProviderRecord]:
    rows = await conn.execute(select(providers).order_by(providers.c.name))
    return [ProviderRecord(**row._asdict()) for row in rows]


async def get_provider(conn: AsyncConnection, name: str) -> ProviderRecord:
    row = (await conn.execute(select(providers).where(providers.c.name == name))).first()
    if row is None:
        raise ProviderNotFound(f"no provider named {name!r}; see `patchbay providers list`")
    return ProviderRecord(**row._asdict())


async def update_provider(conn: AsyncConnection, name: str, **values: Any) -> ProviderRecord:
    if values:
        await conn.execute(update(providers).where(providers.c.name == name).values(**values))
    return await get_provider(conn, name)


async def delete_provider(conn: AsyncConnection, name: str) -> None:
    result = await conn.execute(providers.delete().where(providers.c.name == name))
    if result.rowcount == 0:
        raise ProviderNotFound(f"no provider named {name!r}")


async def insert_model(conn: AsyncConnection, **values: Any) -> ModelRecord:
    record = ModelRecord(id=new_id(), created_at=datetime.now(UTC), **values)
    if record.is_default:
        await conn.execute(update(models).values(is_default=False))
    try:
        async with conn.begin_nested():
            await conn.execute(
                models.insert().values(**{k: getattr(record, k) for k in ModelRecord.__slots__})
            )
    except IntegrityError as exc:
        raise Conflict(f"a model named {record.name!r} already exists") from exc
    return record


async def list_models(conn: AsyncConnection) -> list[tuple[ModelRecord, ProviderRecord]]:
    query = (
        select(models, providers)
        .join(providers, providers.c.id == models.c.provider_id)
        .order_by(models.c.name)
    )
    result = []
    for row in (await conn.execute(query)).all():
        values = list(row)
        model = ModelRecord(*values[: len(ModelRecord.__slots__)])
        provider = ProviderRecord(*values[len(ModelRecord.__slots__) :])
        result.append((model, provider))
    return result


async def get_model(conn: AsyncConnection, name: str) -> ModelRecord:
    row = (await conn.execute(select(models).where(models.c.name == name))).first()
    if row is None:
        raise ModelNotFound(f"no model named {name!r}; see GET /v1/models")
    return ModelRecord(**row._asdict())


async def update_model(conn: AsyncConnection, name: str, **values: Any) -> ModelRecord:
    await get_model(conn, name)
    if values.get("is_default"):
        await conn.execute(update(models).values(is_default=False))
    if values:
        await conn.execute(update(models).where(models.c.name == name).values(**values))
    return await get_model(conn, name)


async def delete_model(conn: AsyncConnection, name: str) -> None:
    result = await conn.execute(models.delete().where(models.c.name == name))
    if result.rowcount == 0:
        raise ModelNotFound(f"no model named {name!r}")
