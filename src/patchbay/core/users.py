"""Users and their API keys: bootstrap, authentication (cached) and management."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from patchbay.cache import TtlCache
from patchbay.core.keys import display_prefix, hash_api_key, new_api_key
from patchbay.errors import AuthenticationFailed, PermissionDenied, UserNotFound
from patchbay.schemas.users import (
    ApiKeyIssued,
    ApiKeyRead,
    InstructionRecord,
    UserCreate,
    UserRead,
    UserUpdate,
)
from patchbay.store import users as user_rows
from patchbay.store.db import Database
from patchbay.store.refs import Ref

ADMIN_NAME = "admin"
# The installation itself, for lookups a trusted module makes on a sender's behalf.
SYSTEM = UserRead(
    id="system",
    number=None,
    name="system",
    role="admin",
    profile={},
    instruction_recording=False,
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
)


@dataclass(frozen=True, slots=True)
class Bootstrap:
    admin: UserRead
    key: str | None  # set only when this call created the admin and generated its key


async def bootstrap_admin(db: Database, *, admin_key: str | None) -> Bootstrap | None:
    """On first start, create the admin and its key; returns None when users already exist."""
    async with db.begin() as conn:
        if await user_rows.count_users(conn):
            return None
        admin = await user_rows.insert_user(conn, name=ADMIN_NAME, role="admin", profile={})
        key = admin_key or new_api_key()
        await user_rows.insert_api_key(
            conn,
            user_id=admin.id,
            name="bootstrap",
            prefix=display_prefix(key),
            key_hash=hash_api_key(key),
        )
    return Bootstrap(admin=admin, key=None if admin_key else key)


class Authenticator:
    """Resolves bearer keys to users, caching hits for a few seconds to keep the hot path cheap."""

    def __init__(self, db: Database, *, ttl_s: float = 10.0) -> None:
        self._db = db
        self._cache: TtlCache[str, UserRead] = TtlCache(ttl_s)

    async def authenticate(self, key: str | None) -> UserRead:
        if not key:
            raise AuthenticationFailed("no API key; send `Authorization: Bearer <key>`")
        key_hash = hash_api_key(key)
        return await self._cache.get(key_hash, partial(self._user_of, key_hash))

    async def _user_of(self, key_hash: str) -> UserRead:
        async with self._db.connect() as conn:
            user = await user_rows.find_user_by_key_hash(conn, key_hash)
        if user is None:
            raise AuthenticationFailed("invalid API key")
        return user

    def forget(self) -> None:
        self._cache.clear()


def require_admin(user: UserRead) -> None:
    if user.role != "admin":
        raise PermissionDenied("this needs an admin key")


class UserService:
    """Users and their instruction records; admins manage everyone, a user only themself."""

    def __init__(self, db: Database, auth: Authenticator) -> None:
        self._db = db
        self._auth = auth

    async def create(self, actor: UserRead, data: UserCreate) -> UserRead:
        require_admin(actor)
        async with self._db.begin() as conn:
            return await user_rows.insert_user(
                conn, name=data.name, role=data.role, profile=data.profile
            )

    async def list_users(self, actor: UserRead) -> list[UserRead]:
        """Everyone for an admin; just themself for anyone else."""
        if actor.role != "admin":
            return [await self.get(actor, actor.id)]
        async with self._db.connect() as conn:
            return await user_rows.list_users(conn)

    async def get(self, actor: UserRead, user_id: Ref) -> UserRead:
        async with self._db.connect() as conn:
            user = await user_rows.get_user(conn, user_id)
        if actor.role != "admin" and user.id != actor.id:
            raise UserNotFound(f"no user with id {user_id!r}")
        return user

    async def update(self, actor: UserRead, user_id: Ref, data: UserUpdate) -> UserRead:
        values = data.model_dump(exclude_unset=True)
        if "role" in values and actor.role != "admin":
            raise PermissionDenied("only an admin may change a role")
        target = await self.get(actor, user_id)
        async with self._db.begin() as conn:
            user = await user_rows.update_user(conn, target.id, values)
        self._auth.forget()
        return user

    async def delete(self, actor: UserRead, user_id: Ref) -> None:
        require_admin(actor)
        target = await self.get(actor, user_id)
        if target.id == actor.id:
            raise PermissionDenied("you cannot delete yourself; another admin can")
        async with self._db.begin() as conn:
            await user_rows.delete_user(conn, target.id)
        self._auth.forget()

    async def record(self, record: InstructionRecord) -> None:
        async with self._db.begin() as conn:
            await user_rows.insert_instruction_record(conn, record)

    async def records(
        self, actor: UserRead, user_id: Ref, *, limit: int = 100, before: str | None = None
    ) -> list[InstructionRecord]:
        """The user's recorded instructions, newest first."""
        target = await self.get(actor, user_id)
        async with self._db.connect() as conn:
            return await user_rows.list_instruction_records(
                conn, target.id, limit=limit, before=before
            )

    async def delete_records(self, actor: UserRead, user_id: Ref) -> int:
        target = await self.get(actor, user_id)
        async with self._db.begin() as conn:
            return await user_rows.delete_instruction_records(conn, target.id)

    async def issue_key(self, actor: UserRead, user_id: Ref, *, name: str) -> ApiKeyIssued:
        require_admin(actor)
        key = new_api_key()
        async with self._db.begin() as conn:
            user = await user_rows.get_user(conn, user_id)
            row = await user_rows.insert_api_key(
                conn,
                user_id=user.id,
                name=name,
                prefix=display_prefix(key),
                key_hash=hash_api_key(key),
            )
        return ApiKeyIssued(**row.model_dump(), key=key)

    async def list_keys(self, user_id: str | None) -> list[ApiKeyRead]:
        async with self._db.connect() as conn:
            return await user_rows.list_api_keys(conn, user_id)

    async def revoke_key(self, key_id: str, *, actor: UserRead) -> None:
        async with self._db.begin() as conn:
            key = await user_rows.get_api_key(conn, key_id)
            if key is None or (actor.role != "admin" and key.user_id != actor.id):
                raise UserNotFound(f"no API key with id {key_id!r}")
            await user_rows.revoke_api_key(conn, key_id)
        self._auth.forget()
