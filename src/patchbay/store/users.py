"""Users, API keys and identities in the database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from patchbay.errors import UserExists, UserNotFound
from patchbay.ids import new_id
from patchbay.schemas.users import ApiKeyRead, InstructionRecord, Profile, Role, UserRead
from patchbay.store.refs import Ref, ref_filter
from patchbay.store.tables import api_keys, instruction_records, users


def _user(row: object) -> UserRead:
    return UserRead.model_validate(row, from_attributes=True)


async def count_users(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(users))).scalar_one())


async def insert_user(
    conn: AsyncConnection, *, name: str, role: Role, profile: Profile
) -> UserRead:
    now = datetime.now(UTC)
    row = {
        "id": new_id(),
        "name": name,
        "role": role,
        "profile": profile,
        "instruction_recording": False,
        "created_at": now,
        "updated_at": now,
    }
    try:
        async with conn.begin_nested():
            await conn.execute(users.insert().values(**row))
    except IntegrityError as exc:
        raise UserExists(f"a user named {name!r} already exists") from exc
    return await get_user(conn, str(row["id"]))


async def get_user(conn: AsyncConnection, user_id: Ref) -> UserRead:
    """A user by id or number."""
    row = (await conn.execute(select(users).where(ref_filter(users, user_id)))).first()
    if row is None:
        raise UserNotFound(f"no user with id {user_id!r}")
    return _user(row)


async def get_user_by_ref(conn: AsyncConnection, ref: str) -> UserRead:
    """A user by id, number or name."""
    try:
        return await get_user(conn, ref)
    except UserNotFound:
        row = (await conn.execute(select(users).where(users.c.name == ref))).first()
        if row is None:
            raise
        return _user(row)


async def list_users(conn: AsyncConnection) -> list[UserRead]:
    rows = await conn.execute(select(users).order_by(users.c.id))
    return [_user(row) for row in rows]


async def update_user(conn: AsyncConnection, user_id: str, values: dict[str, object]) -> UserRead:
    if values:
        values = {**values, "updated_at": datetime.now(UTC)}
        try:
            async with conn.begin_nested():
                result = await conn.execute(
                    update(users).where(users.c.id == user_id).values(**values)
                )
        except IntegrityError as exc:
            raise UserExists(f"a user named {values.get('name')!r} already exists") from exc
        if result.rowcount == 0:
            raise UserNotFound(f"no user with id {user_id!r}")
    return await get_user(conn, user_id)


async def delete_user(conn: AsyncConnection, user_id: str) -> None:
    result = await conn.execute(users.delete().where(users.c.id == user_id))
    if result.rowcount == 0:
        raise UserNotFound(f"no user with id {user_id!r}")


async def insert_instruction_record(conn: AsyncConnection, record: InstructionRecord) -> None:
    await conn.execute(instruction_records.insert().values(**record.model_dump()))


async def list_instruction_records(
    conn: AsyncConnection, user_id: str, *, limit: int, before: str | None = None
) -> list[InstructionRecord]:
    """A user's records, newest first."""
    query = select(instruction_records).where(instruction_records.c.user_id == user_id)
    if before is not None:
        query = query.where(instruction_records.c.id < before)
    rows = await conn.execute(query.order_by(instruction_records.c.id.desc()).limit(limit))
    return [InstructionRecord.model_validate(row, from_attributes=True) for row in rows]


async def delete_instruction_records(conn: AsyncConnection, user_id: str) -> int:
    result = await conn.execute(
        instruction_records.delete().where(instruction_records.c.user_id == user_id)
    )
    return int(result.rowcount)


def _key(row: object) -> ApiKeyRead:
    return ApiKeyRead.model_validate(row, from_attributes=True)


async def insert_api_key(
    conn: AsyncConnection, *, user_id: str, name: str, prefix: str, key_hash: str
) -> ApiKeyRead:
    row = {
        "id": new_id(),
        "user_id": user_id,
        "name": name,
        "prefix": prefix,
        "key_hash": key_hash,
        "scopes": [],
        "created_at": datetime.now(UTC),
        "last_used_at": None,
        "revoked_at": None,
    }
    await conn.execute(api_keys.insert().values(**row))
    return ApiKeyRead.model_validate(row)


async def find_user_by_key_hash(conn: AsyncConnection, key_hash: str) -> UserRead | None:
    query = (
        select(users)
        .join(api_keys, api_keys.c.user_id == users.c.id)
        .where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
    )
    row = (await conn.execute(query)).first()
    return None if row is None else _user(row)


async def list_api_keys(conn: AsyncConnection, user_id: str | None = None) -> list[ApiKeyRead]:
    query = select(api_keys).order_by(api_keys.c.id)
    if user_id is not None:
        query = query.where(api_keys.c.user_id == user_id)
    return [_key(row) for row in await conn.execute(query)]


async def get_api_key(conn: AsyncConnection, key_id: str) -> ApiKeyRead | None:
    row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
    return None if row is None else _key(row)


async def revoke_api_key(conn: AsyncConnection, key_id: str) -> str | None:
    """Revoke a key; returns its hash so caches can forget it, or None if there is no such key."""
    row = (await conn.execute(select(api_keys.c.key_hash).where(api_keys.c.id == key_id))).first()
    if row is None:
        return None
    await conn.execute(
        update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=datetime.now(UTC))
    )
    return str(row.key_hash)
