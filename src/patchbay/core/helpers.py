"""The helper registry: helpers register their capabilities, stay up by heartbeats, and the core
calls them for people (schemas checked both ways, timeouts, retries of idempotent capabilities,
a circuit breaker per helper) and to turn attachments into text."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import aiohttp
import orjson

from patchbay.bodies import read_at_most
from patchbay.config import HelperSettings
from patchbay.core import mcp
from patchbay.core.helper_rules import (
    capability_of,
    check_manifest,
    host_key,
    matches,
    may_use,
    refusal_of,
    same_host,
    tool_names,
    url_host_key,
    validate,
)
from patchbay.core.llm.registry import ToolSpec
from patchbay.core.users import require_admin
from patchbay.errors import (
    AuthenticationFailed,
    Conflict,
    HelperFailed,
    HelperNotFound,
    InvalidRequest,
    PatchbayError,
    PayloadTooLarge,
    PermissionDenied,
)
from patchbay.http1 import IDLE_S
from patchbay.schemas.helpers import (
    Capability,
    HelperManifest,
    HelperRead,
    HelperStats,
    HelperUpdate,
    ToText,
)
from patchbay.schemas.users import UserRead
from patchbay.store import helpers as rows
from patchbay.store import users as user_rows
from patchbay.store.chats import user_ids
from patchbay.store.db import Database
from patchbay.store.helpers import HelperRecord

logger = logging.getLogger(__name__)

LISTING_TTL_S = 2.0  # how long a turn reuses the list of helpers


@dataclass(slots=True)
class _Health:
    """A helper's calls as this core process saw them, and its circuit breaker."""

    calls: int = 0
    errors: int = 0
    total_ms: float = 0.0
    failures_in_a_row: int = 0
    open_until: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def stats(self) -> HelperStats:
        mean = self.total_ms / self.calls if self.calls else None
        return HelperStats(
            calls=self.calls,
            errors=self.errors,
            mean_latency_ms=None if mean is None else round(mean, 2),
        )


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
        self._health: dict[str, _Health] = {}
        self._session: aiohttp.ClientSession | None = None
        # The helpers as last read, shared by every turn for LISTING_TTL_S: one read however many
        # turns start at once (each reading it for itself cost the core ~4% under load).
        self._listing: tuple[float, asyncio.Future[list[HelperRead]]] | None = None
        self._pings: dict[str, asyncio.Task[None]] = {}  # an MCP server's ping still out

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Idle connections go before a helper's server lets them go (uvicorn: after 5 s): a
            # call sent on one it is closing fails, and only idempotent ones are tried again.
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=IDLE_S)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        pings = list(self._pings.values())
        for ping in pings:
            ping.cancel()
        # Each ends before the store closes: one cancelled in its write left the close hanging.
        await asyncio.gather(*pings, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

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
        self._health.pop(name, None)
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
            stats=self._health.get(record.name, _Health()).stats(),
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

    # calling

    def usable(self, helper: HelperRead, user: UserRead) -> bool:
        """Whether `user` may use this helper now (enabled, up, allowed, breaker closed)."""
        return may_use(helper, user) and self._unavailable(helper) is None

    def _unavailable(self, helper: HelperRead) -> str | None:
        """Why nobody can call the helper now, if nobody can."""
        if not helper.enabled:
            return "disabled"
        if helper.state != "up":
            return "down"
        if self._health.get(helper.name, _Health()).open_until > time.monotonic():
            return "it failed too often; try again shortly"
        return None

    async def call(
        self, user: UserRead, helper_name: str, capability_name: str, arguments: object
    ) -> object:
        """Call a tool capability for `user`: arguments and result checked against its schemas."""
        helper = await self.get(helper_name)
        capability = capability_of(helper, capability_name, "tool")
        self._check_usable(helper, user)
        validate(arguments, capability.input_schema, f"{capability.name}: the arguments")
        if helper.protocol == "mcp":
            result = await self._call_mcp(helper, capability, arguments)
        else:
            raw = await self._post(helper, capability, orjson.dumps(arguments), "application/json")
            try:
                result = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise HelperFailed(
                    f"{helper.name}.{capability.name} answered with no JSON"
                ) from exc
        validate(result, capability.output_schema, f"{capability.name}: its answer", helper=True)
        return result

    async def to_text(self, user: UserRead, media_type: str, data: bytes) -> ToText:
        """Turn a file into text with the first usable helper that converts its media type."""
        if not data:
            raise InvalidRequest("the file is empty")
        if len(data) > self._settings.max_request_bytes:
            raise PayloadTooLarge(f"files larger than {self._settings.max_request_bytes} bytes")
        kind = media_type.split(";", 1)[0].strip().lower()
        for helper in await self.list_helpers():
            for capability in helper.capabilities:
                if capability.kind != "to-text" or not matches(kind, capability.media_types):
                    continue
                if not self.usable(helper, user):
                    continue
                raw = await self._post(helper, capability, data, kind)
                try:
                    return ToText.model_validate_json(raw)
                except ValueError as exc:
                    raise HelperFailed(f"{helper.name} answered with no ToText") from exc
        raise InvalidRequest(f"no helper that is up turns {kind!r} into text")

    async def _recent_listing(self) -> list[HelperRead]:
        now = time.monotonic()
        if self._listing is None or self._listing[0] < now:
            self._listing = (now + LISTING_TTL_S, asyncio.ensure_future(self.list_helpers()))
        listing = self._listing[1]
        try:
            return await asyncio.shield(listing)  # one waiter's cancellation is not the others'
        except Exception:
            self._forget_listing(listing)  # read again next time rather than keep the failure
            raise

    def _forget_listing(self, listing: asyncio.Future[list[HelperRead]]) -> None:
        if self._listing is not None and self._listing[1] is listing:
            self._listing = None

    async def tools_for(self, user_id: str, record: list[dict[str, object]]) -> list[ToolSpec]:
        """Every tool capability the user may use now, ready to offer a model; each call it makes
        is appended to `record` (arguments, result or error, duration)."""
        tools = [
            (h, c) for h in await self._recent_listing() for c in h.capabilities if c.kind == "tool"
        ]
        if not tools:
            return []
        async with self._db.connect() as conn:
            user = await user_rows.get_user(conn, user_id)
        # Named among all the helpers, not the usable only: a name the model saw on an earlier
        # turn must not pass to another tool because a helper is down or not this user's.
        names = tool_names([(h.name, c.name) for h, c in tools])
        return [
            ToolSpec(
                name=name,
                description=capability.description,
                input_schema=capability.input_schema or {"type": "object", "properties": {}},
                call=partial(self._tool_call, user, helper.name, capability.name, record),
            )
            for name, (helper, capability) in zip(names, tools, strict=True)
            if self.usable(helper, user)
        ]

    async def _tool_call(
        self,
        user: UserRead,
        helper: str,
        capability: str,
        record: list[dict[str, object]],
        arguments: dict[str, object],
    ) -> str:
        started = time.perf_counter()
        entry: dict[str, object] = {"helper": helper, "capability": capability}
        entry["arguments"] = arguments
        try:
            result = await self.call(user, helper, capability, arguments)
            entry["result"] = result
            output = orjson.dumps(result).decode()
        except PatchbayError as exc:
            entry["error"] = exc.message
            output = f"Error: {exc.message}"
        entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
        record.append(entry)
        return output

    def _check_usable(self, helper: HelperRead, user: UserRead) -> None:
        if not may_use(helper, user):  # the person's limit, not the helper's failure
            raise PermissionDenied(
                f"the helper {helper.name} is limited to some users; an admin can allow you"
            )
        why = self._unavailable(helper)
        if why is not None:
            raise HelperFailed(f"the helper {helper.name} is not available now ({why})")

    async def _post(
        self, helper: HelperRead, capability: Capability, body: bytes, content_type: str
    ) -> bytes:
        tries = 1 + (self._settings.retries if capability.idempotent else 0)
        health = self._health.setdefault(helper.name, _Health())
        url = f"{helper.base_url.rstrip('/')}/capabilities/{capability.name}"
        for attempt in range(1, tries + 1):
            started = time.perf_counter()
            try:
                raw = await self._post_once(
                    helper.name, url, body, content_type, capability.timeout_s
                )
            except (TimeoutError, aiohttp.ClientError, PatchbayError) as exc:
                error = (
                    exc
                    if isinstance(exc, PatchbayError)
                    else HelperFailed(
                        f"{helper.name}.{capability.name} did not answer: {type(exc).__name__}"
                    )
                )
                # A refusal (4xx) is about the input, not the helper's health: it must not let
                # one person's bad arguments open the breaker for everyone.
                self._failed(health, started, broken=error.retryable)
                if attempt == tries or not error.retryable:
                    raise error from exc
                await asyncio.sleep(0.2 * attempt)
            else:
                self._succeeded(health, started)
                return raw
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post_once(
        self, name: str, url: str, body: bytes, content_type: str, timeout_s: float
    ) -> bytes:
        # Redirects are not followed: they would lead the core to hosts the helper could not
        # register (its own ports, the network behind it).
        async with self._http().post(
            url,
            data=body,
            headers={"Content-Type": content_type},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as response:
            raw = await read_at_most(response, self._settings.max_response_bytes)
            if raw is None:
                raise HelperFailed(f"{name} answered with too much")
            if 300 <= response.status < 400:
                raise HelperFailed(f"{name} answered {response.status}: redirects are not followed")
            if response.status >= 400:
                raise refusal_of(name, response.status, raw)
        return raw

    async def _call_mcp(
        self, helper: HelperRead, capability: Capability, arguments: object
    ) -> object:
        health = self._health.setdefault(helper.name, _Health())
        started = time.perf_counter()
        tool = capability.remote_name or capability.name
        try:
            result = await asyncio.wait_for(
                mcp.call_tool(helper.base_url, tool, dict(arguments)),  # type: ignore[call-overload]
                capability.timeout_s,
            )
        except (HelperFailed, TimeoutError) as exc:
            self._failed(health, started)
            if isinstance(exc, TimeoutError):
                raise HelperFailed(f"{helper.name}.{tool} did not answer in time") from exc
            raise
        self._succeeded(health, started)
        return result

    def _succeeded(self, health: _Health, started: float) -> None:
        health.calls += 1
        health.total_ms += (time.perf_counter() - started) * 1000
        health.failures_in_a_row = 0

    def _failed(self, health: _Health, started: float, *, broken: bool = True) -> None:
        health.calls += 1
        health.errors += 1
        health.total_ms += (time.perf_counter() - started) * 1000
        if not broken:  # a refusal: neither a failure of the helper's nor a success
            return
        health.failures_in_a_row += 1
        if health.failures_in_a_row >= self._settings.breaker_failures:
            health.open_until = time.monotonic() + self._settings.breaker_reset_s
            health.failures_in_a_row = 0
