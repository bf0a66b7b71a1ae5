"""Calling helpers for people: schemas checked both ways, timeouts, retries of idempotent
capabilities, a circuit breaker per helper, tools offered to models, and attachments turned into
text."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import aiohttp
import orjson

from patchbay.bodies import read_at_most
from patchbay.config import HelperSettings
from patchbay.core import mcp
from patchbay.core.helper_rules import (
    capability_of,
    matches,
    may_use,
    refusal_of,
    tool_names,
    validate,
)
from patchbay.core.llm.registry import ToolSpec
from patchbay.errors import (
    HelperFailed,
    InvalidRequest,
    PatchbayError,
    PayloadTooLarge,
    PermissionDenied,
)
from patchbay.http1 import IDLE_S
from patchbay.schemas.helpers import Capability, HelperRead, HelperStats, ToText
from patchbay.schemas.users import UserRead
from patchbay.store import users as user_rows
from patchbay.store.db import Database

LISTING_TTL_S = 2.0  # how long a turn reuses the list of helpers


@dataclass(slots=True)
class _Health:
    """A helper's calls as this core process saw them, and its circuit breaker."""

    calls: int = 0
    errors: int = 0
    total_ms: float = 0.0
    failures_in_a_row: int = 0
    open_until: float = 0.0

    def stats(self) -> HelperStats:
        mean = self.total_ms / self.calls if self.calls else None
        return HelperStats(
            calls=self.calls,
            errors=self.errors,
            mean_latency_ms=None if mean is None else round(mean, 2),
        )


class HelperCalls:
    """The calls of one core process to the helpers `get` and `list_helpers` read, and how each
    helper fared in them."""

    def __init__(
        self,
        db: Database,
        settings: HelperSettings,
        *,
        get: Callable[[str], Awaitable[HelperRead]],
        list_helpers: Callable[[], Awaitable[list[HelperRead]]],
    ) -> None:
        self._db = db
        self._settings = settings
        self._get = get
        self._list_helpers = list_helpers
        self._health: dict[str, _Health] = {}
        self._session: aiohttp.ClientSession | None = None
        # The helpers as last read, shared by every turn for LISTING_TTL_S: one read however many
        # turns start at once (each reading it for itself cost the core ~4% under load).
        self._listing: tuple[float, asyncio.Future[list[HelperRead]]] | None = None

    def stats(self, name: str) -> HelperStats:
        return self._health.get(name, _Health()).stats()

    def forget(self, name: str) -> None:
        self._health.pop(name, None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Idle connections go before a helper's server lets them go (uvicorn: after 5 s): a
            # call sent on one it is closing fails, and only idempotent ones are tried again.
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=IDLE_S)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

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
        helper = await self._get(helper_name)
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
        for helper in await self._list_helpers():
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
            self._listing = (now + LISTING_TTL_S, asyncio.ensure_future(self._list_helpers()))
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
