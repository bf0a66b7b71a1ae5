"""The helper registry: helpers register their capabilities from their hosts and stay up by
heartbeats, admins add MCP servers and manage them all; calling them is HelperCalls'
(core/helper_calls.py)."""

from __future__ import annotations

import asyncio
import hmac
import logging
from datetime import UTC, datetime

from patchbay.config import HelperSettings
from patchbay.core import mcp
from patchbay.core.helper_calls import HelperCalls
from patchbay.core.helper_rules import (
    check_base_url,
    check_manifest,
    host_key,
    same_host,
    url_host_key,
)
from patchbay.core.llm.registry import ToolSpec
from patchbay.core.users import require_admin
from patchbay.errors import (
    AuthenticationFailed,
    Conflict,
    HelperNotFound,
    InvalidRequest,
    PatchbayError,
    PermissionDenied,
)
from patchbay.schemas.helpers import HelperManifest, HelperRead, HelperUpdate, ToText
from patchbay.schemas.users import UserRead
from patchbay.store import helpers as rows
from patchbay.store.chats import user_ids
from patchbay.store.db import Database
from patchbay.store.helpers import HelperRecord

logger = logging.getLogger(__name__)


def _refused(name: str, found: HelperRecord | None, *, if_mcp: PatchbayError) -> PatchbayError:
    """Why the helper key could not change the helper `name`, as `found` after trying."""
    if found is None:
        return HelperNotFound(f"no helper named {name!r} (a helper registers first)")
    if found.manifest.protocol == "mcp":
        return if_mcp
    # No host: registered before hosts were kept, with a base URL that names none.
    whose = f"at another host ({found.host})" if found.host else "of no known host"
    return Conflict(
        f"{name!r} is a helper {whose}; register under another name, "
        f"or an admin can remove that one with `patchbay helpers remove {name}`"
    )


class HelperRegistry:
    def __init__(
        self, db: Database, settings: HelperSettings, *, key: str, down_after_s: float
    ) -> None:
        self._db = db
        self._settings = settings
        self._key = key
        self._down_after_s = down_after_s
        self._pings: dict[str, asyncio.Task[None]] = {}  # an MCP server's ping still out
        self._calls = HelperCalls(db, settings, get=self.get, list_helpers=self.list_helpers)

    async def close(self) -> None:
        pings = list(self._pings.values())
        for ping in pings:
            ping.cancel()
        # Each ends before the store closes: one cancelled in its write left the close hanging.
        await asyncio.gather(*pings, return_exceptions=True)
        await self._calls.close()

    def check_key(self, key: str | None) -> None:
        if key is None or not hmac.compare_digest(key.encode(), self._key.encode()):
            raise AuthenticationFailed("a helper needs the helper registration key to do this")

    # registration

    async def register(self, manifest: HelperManifest, *, peer: str | None) -> HelperRead:
        check_manifest(manifest)
        if manifest.protocol == "mcp":
            raise PermissionDenied("an admin adds MCP servers (POST /v1/helpers/mcp)")
        if not same_host(manifest.base_url, peer, self._settings.allowed_url_hosts):
            raise PermissionDenied(
                f"the base URL {manifest.base_url} is not where this helper registers from "
                f"({peer or 'an address not known'}); an admin can allow its host "
                "(PATCHBAY_HELPERS__ALLOWED_URL_HOSTS)"
            )
        # Every helper holds the helper key, which is no admin's: it must not let one redirect
        # another host's helper or an MCP server (and the people's arguments and files) to
        # itself. A name stays with its host: the peer's, or an allowed host the URL stays at.
        host = url_host_key(manifest.base_url) or ""
        held_by = {h for h in (host, host_key(peer)) if h}
        async with self._db.begin() as conn:
            now = datetime.now(UTC)
            if not await rows.upsert_helper(conn, manifest, now, host=host, held_by=held_by):
                found = await rows.find_helper(conn, manifest.name)
                raise _refused(
                    manifest.name,
                    found,
                    if_mcp=Conflict(
                        f"{manifest.name!r} is an MCP server an admin added; pick another name"
                    ),
                )
        logger.info("helper %s registered at %s", manifest.name, mcp.public_url(manifest.base_url))
        return await self.get(manifest.name)

    async def add_mcp(self, actor: UserRead, name: str, url: str) -> HelperRead:
        """Register an MCP server by URL (admins): its tools become capabilities."""
        require_admin(actor)
        check_base_url(url)  # before the core connects to it
        manifest = await mcp.manifest_of(name, url)
        check_manifest(manifest)
        async with self._db.begin() as conn:
            host = url_host_key(url) or ""
            await rows.upsert_helper(conn, manifest, datetime.now(UTC), host=host)
        logger.info("MCP server %s registered as helper %s", mcp.public_url(url), name)
        return await self.get(name)

    async def ping_mcp(self) -> None:
        """Ask each MCP helper for a ping (they send no heartbeats); one that answers is seen.

        Each server is asked on its own and not again while its last ping is out: one that
        hangs must neither leave the others unasked nor hold up their next round, and so make
        them shown down."""
        async with self._db.connect() as conn:
            records = [r for r in await rows.list_helpers(conn) if r.manifest.protocol == "mcp"]
        for gone in self._pings.keys() - {r.name for r in records}:  # removed by another core
            self._pings.pop(gone).cancel()
        for record in records:
            out = self._pings.get(record.name)
            if out is None or out.done():
                self._pings[record.name] = asyncio.create_task(self._ping(record))

    async def _ping(self, record: HelperRecord) -> None:
        if not await mcp.ping(record.manifest.base_url, timeout_s=self._down_after_s / 2):
            return
        try:
            async with self._db.begin() as conn:
                await rows.touch_helper(conn, record.name, datetime.now(UTC))
        except Exception:
            logger.exception("could not mark MCP helper %s seen", record.name)

    def _hosts_of(self, peer: str | None) -> set[str]:
        """The hosts whose helpers the helper key from `peer` may heartbeat or remove: its own,
        and the hosts an admin allowed (where their helpers call from is not known)."""
        hosts = {host_key(host) for host in [peer, *self._settings.allowed_url_hosts]}
        return {host for host in hosts if host}

    async def heartbeat(self, name: str, *, peer: str | None) -> None:
        """A helper says it is up (with the helper key, from its host): an MCP server is up when
        it answers the core's pings, not when someone says so."""
        async with self._db.begin() as conn:
            now = datetime.now(UTC)
            if await rows.touch_helper(conn, name, now, held_by=self._hosts_of(peer)):
                return
            found = await rows.find_helper(conn, name)
        mcp_server = PermissionDenied(f"{name!r} is an MCP server: the core pings it")
        raise _refused(name, found, if_mcp=mcp_server)

    async def leave(self, name: str, *, peer: str | None) -> None:
        """A helper leaves, with the helper key, from its host: MCP servers are an admin's to
        remove."""
        async with self._db.begin() as conn:
            left = await rows.delete_helper(conn, name, held_by=self._hosts_of(peer))
            found = None if left else await rows.find_helper(conn, name)
        if not left:
            mcp_server = PermissionDenied(f"{name!r} is an MCP server: an admin removes it")
            raise _refused(name, found, if_mcp=mcp_server)
        self._forget(name)

    async def deregister(self, name: str) -> None:
        async with self._db.begin() as conn:
            if not await rows.delete_helper(conn, name):
                raise HelperNotFound(f"no helper named {name!r}")
        self._forget(name)

    def _forget(self, name: str) -> None:
        self._calls.forget(name)
        ping = self._pings.pop(name, None)
        if ping is not None:  # it would go on, unheld, after close(); or mark a new one seen
            ping.cancel()

    # reading and managing

    def _read(self, record: HelperRecord, viewer: UserRead | None = None) -> HelperRead:
        """The helper as `viewer` may see it: only admins see a URL's user, password and query,
        where a token often travels."""
        manifest = record.manifest
        seen = record.last_seen
        up = seen is not None and (datetime.now(UTC) - seen).total_seconds() < self._down_after_s
        url, description = manifest.base_url, manifest.description
        if viewer is not None and viewer.role != "admin":
            url = mcp.public_url(manifest.base_url)
            description = description.replace(manifest.base_url, url)
        return HelperRead(
            name=record.name,
            version=manifest.version,
            description=description,
            base_url=url,
            protocol=manifest.protocol,
            capabilities=manifest.capabilities,
            enabled=record.enabled,
            state="up" if up else "down",
            last_seen=seen,
            registered_at=record.registered_at,
            stats=self._calls.stats(record.name),
            allowed_roles=record.allowed_roles,
            allowed_users=record.allowed_users,
        )

    async def list_helpers(self, *, viewer: UserRead | None = None) -> list[HelperRead]:
        async with self._db.connect() as conn:
            return [self._read(r, viewer) for r in await rows.list_helpers(conn)]

    async def get(self, name: str, *, viewer: UserRead | None = None) -> HelperRead:
        return self._read(await self._record(name), viewer)

    async def _record(self, name: str) -> HelperRecord:
        async with self._db.connect() as conn:
            record = await rows.find_helper(conn, name)
        if record is None:
            raise HelperNotFound(f"no helper named {name!r}; GET /v1/helpers lists them")
        return record

    async def update(self, actor: UserRead, name: str, data: HelperUpdate) -> HelperRead:
        """Change a helper; the users it is limited to (names, ids or numbers) are kept by id, as
        a user may change their name (and another take it)."""
        require_admin(actor)
        values = data.model_dump(exclude_unset=True)
        if "enabled" in values and values["enabled"] is None:
            raise InvalidRequest("enabled is true or false, not null")
        if not values:  # nothing to change: an UPDATE with no SET would fail
            return await self.get(name)
        async with self._db.begin() as conn:
            if values.get("allowed_users"):
                values["allowed_users"] = await conn.run_sync(user_ids, values["allowed_users"])
            await rows.update_helper(conn, name, values)
        return await self.get(name)

    async def remove(self, actor: UserRead, name: str) -> None:
        require_admin(actor)
        await self.deregister(name)

    # calling, which HelperCalls does

    async def call(
        self, user: UserRead, helper_name: str, capability_name: str, arguments: object
    ) -> object:
        """Call a tool capability for `user`: arguments and result checked against its schemas."""
        return await self._calls.call(user, helper_name, capability_name, arguments)

    async def to_text(self, user: UserRead, media_type: str, data: bytes) -> ToText:
        """Turn a file into text with the first usable helper that converts its media type."""
        return await self._calls.to_text(user, media_type, data)

    async def tools_for(self, user_id: str, record: list[dict[str, object]]) -> list[ToolSpec]:
        """Every tool capability the user may use now, ready to offer a model; each call it makes
        is appended to `record` (arguments, result or error, duration)."""
        return await self._calls.tools_for(user_id, record)
