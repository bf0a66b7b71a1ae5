"""Who writes to a channel: senders resolved to users under the channel's policy, pairing codes
admins approve, and identities that make one person one user across channels."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from patchbay.core.users import require_admin
from patchbay.errors import NotFound, UserExists
from patchbay.schemas.senders import (
    IdentityCreate,
    IdentityRead,
    PairingApprove,
    PairingRead,
    SenderResolve,
    SenderResolved,
)
from patchbay.schemas.users import UserRead
from patchbay.store import senders as rows
from patchbay.store import users as user_rows
from patchbay.store.db import Database

PAIRING_TTL = timedelta(hours=1)
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread


def _code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


def _user_name(channel: str, address: str) -> str:
    return (channel + "-" + re.sub(r"[^A-Za-z0-9._@+-]+", "_", address))[:200]


class SenderService:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def resolve(self, request: SenderResolve) -> SenderResolved:
        """The user behind a sender, a pairing code to give them, or a refusal."""
        now = datetime.now(UTC)
        async with self._db.begin() as conn:
            user_id = await rows.find_identity(conn, request.channel, request.address)
            if user_id is not None:
                return SenderResolved(status="known", user=await user_rows.get_user(conn, user_id))
            if request.policy == "open":
                user, _ = await _new_user(conn, request.channel, request.address, now)
                return SenderResolved(status="known", user=user)
            if request.policy == "allowlist":
                return SenderResolved(status="refused", reason="this sender is not on the list")
            pairing = await rows.find_pairing(
                conn, channel=request.channel, address=request.address
            )
            if pairing is not None and pairing.expires_at > now:
                return SenderResolved(
                    status="pairing", code=pairing.code, expires_at=pairing.expires_at
                )
            pairing = PairingRead(
                code=_code(),
                channel=request.channel,
                address=request.address,
                display_name=request.display_name,
                created_at=now,
                expires_at=now + PAIRING_TTL,
            )
            await rows.replace_pairing(conn, pairing)
        return SenderResolved(
            status="pairing", code=pairing.code, expires_at=pairing.expires_at, new_code=True
        )

    async def pairings(self, actor: UserRead) -> list[PairingRead]:
        require_admin(actor)
        async with self._db.connect() as conn:
            return await rows.list_pairings(conn, datetime.now(UTC))

    async def approve(
        self, actor: UserRead, channel: str, code: str, data: PairingApprove
    ) -> IdentityRead:
        """Admins: let a sender in, as a new user or as one who already exists."""
        require_admin(actor)
        now = datetime.now(UTC)
        async with self._db.begin() as conn:
            pairing = await rows.find_pairing(conn, channel=channel, code=code.upper())
            if pairing is None or pairing.expires_at <= now:
                raise NotFound(f"no pending pairing {code!r} on {channel}; codes expire in an hour")
            if data.user is None:
                _, identity = await _new_user(conn, channel, pairing.address, now)
            else:
                user = await user_rows.get_user_by_ref(conn, data.user)
                identity = await rows.insert_identity(
                    conn, user_id=user.id, channel=channel, address=pairing.address, now=now
                )
            await rows.delete_pairing(conn, pairing.code)
            return identity

    async def link(self, actor: UserRead, data: IdentityCreate) -> IdentityRead:
        """Admins: one more address for a user (one person, one user across channels)."""
        require_admin(actor)
        async with self._db.begin() as conn:
            user = await user_rows.get_user_by_ref(conn, data.user)
            return await rows.insert_identity(
                conn,
                user_id=user.id,
                channel=data.channel,
                address=data.address,
                now=datetime.now(UTC),
            )

    async def identities(self, actor: UserRead) -> list[IdentityRead]:
        require_admin(actor)
        async with self._db.connect() as conn:
            return await rows.list_identities(conn)

    async def unlink(self, actor: UserRead, identity_id: str) -> None:
        require_admin(actor)
        async with self._db.begin() as conn:
            await rows.delete_identity(conn, identity_id)


async def _new_user(
    conn: AsyncConnection, channel: str, address: str, now: datetime
) -> tuple[UserRead, IdentityRead]:
    """A user for a sender seen for the first time, and the identity that leads to them."""
    name = _user_name(channel, address)
    try:
        user = await user_rows.insert_user(conn, name=name, role="user", profile={})
    except UserExists:
        name = f"{name[:190]}-{secrets.token_hex(3)}"
        user = await user_rows.insert_user(conn, name=name, role="user", profile={})
    identity = await rows.insert_identity(
        conn, user_id=user.id, channel=channel, address=address, now=now
    )
    return user, identity
