"""Identities (a channel address → a user) and pairing codes in the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from patchbay.errors import Conflict, NotFound
from patchbay.ids import new_id
from patchbay.schemas.senders import IdentityRead, PairingRead
from patchbay.store.tables import identities, pairings


async def find_identity(conn: AsyncConnection, channel: str, address: str) -> str | None:
    """The id of the user this address belongs to."""
    query = select(identities.c.user_id).where(
        identities.c.channel == channel, identities.c.address == address
    )
    row = (await conn.execute(query)).first()
    return None if row is None else str(row.user_id)


async def insert_identity(
    conn: AsyncConnection, *, user_id: str, channel: str, address: str, now: datetime
) -> IdentityRead:
    row = {
        "id": new_id(),
        "user_id": user_id,
        "channel": channel,
        "address": address,
        "created_at": now,
    }
    try:
        async with conn.begin_nested():
            await conn.execute(identities.insert().values(**row))
    except IntegrityError as exc:
        raise Conflict(f"{channel} address {address!r} already belongs to a user") from exc
    return IdentityRead.model_validate(row)


async def list_identities(conn: AsyncConnection) -> list[IdentityRead]:
    rows = await conn.execute(select(identities).order_by(identities.c.id))
    return [IdentityRead.model_validate(r, from_attributes=True) for r in rows]


async def delete_identity(conn: AsyncConnection, identity_id: str) -> None:
    result = await conn.execute(identities.delete().where(identities.c.id == identity_id))
    if result.rowcount == 0:
        raise NotFound(f"no identity with id {identity_id!r}")


async def find_pairing(
    conn: AsyncConnection, *, channel: str, address: str | None = None, code: str | None = None
) -> PairingRead | None:
    query = select(pairings).where(pairings.c.channel == channel)
    if address is not None:
        query = query.where(pairings.c.address == address)
    if code is not None:
        query = query.where(pairings.c.code == code)
    row = (await conn.execute(query)).first()
    return None if row is None else PairingRead.model_validate(row, from_attributes=True)


async def replace_pairing(conn: AsyncConnection, pairing: PairingRead) -> None:
    """The sender's pairing code, replacing an earlier (expired) one."""
    await conn.execute(
        pairings.delete().where(
            pairings.c.channel == pairing.channel, pairings.c.address == pairing.address
        )
    )
    await conn.execute(pairings.insert().values(**pairing.model_dump()))


async def list_pairings(conn: AsyncConnection, now: datetime) -> list[PairingRead]:
    rows = await conn.execute(
        select(pairings).where(pairings.c.expires_at > now).order_by(pairings.c.created_at)
    )
    return [PairingRead.model_validate(r, from_attributes=True) for r in rows]


async def delete_pairing(conn: AsyncConnection, code: str) -> None:
    await conn.execute(pairings.delete().where(pairings.c.code == code))
