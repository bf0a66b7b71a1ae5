"""Keeping a helper registered with the core: register, heartbeat, register again, deregister.

A heartbeat answered 404 means the core forgot the helper (it restarted with another database),
and a core that was unreachable may have restarted too: both lead to a fresh registration.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import orjson

from patchbay.errors import (
    AuthenticationFailed,
    Conflict,
    CoreUnreachable,
    InvalidRequest,
    PatchbayError,
    PermissionDenied,
)
from patchbay.schemas.helpers import HELPER_KEY_HEADER, HelperManifest

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 2.0


class Registration:
    """One helper's registration with one core, made over `aiohttp`."""

    def __init__(
        self,
        core_url: str,
        *,
        key: str,
        manifest: HelperManifest,
        interval_s: float = DEFAULT_INTERVAL_S,
        timeout_s: float = 5.0,
        ready_timeout_s: float = 10.0,
    ) -> None:
        self.core_url = core_url.rstrip("/")
        self.manifest = manifest
        self.interval_s = interval_s
        self.registered = False
        self.registrations = 0  # how many times the core accepted us, for tests and logs
        self._key = key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._ready_timeout_s = ready_timeout_s
        self._last_problem = ""

    @property
    def _helper_url(self) -> str:
        return f"{self.core_url}/v1/helpers/{self.manifest.name}"

    async def keep(self) -> None:
        """Register, then heartbeat every interval, registering again whenever needed; forever."""
        async with aiohttp.ClientSession(timeout=self._timeout) as http:
            await self._wait_until_serving(http)
            while True:
                await self._step(http)
                await asyncio.sleep(self.interval_s)

    async def _step(self, http: aiohttp.ClientSession) -> None:
        try:
            if not self.registered:
                await self.register(http)
            elif not await self.heartbeat(http):
                logger.warning("the core forgot helper %s; registering again", self.manifest.name)
                await self.register(http)
        except PatchbayError as exc:
            self.registered = False
            self._report(f"{exc.code}: {exc.message}")

    async def register(self, http: aiohttp.ClientSession) -> None:
        """POST the manifest; adopts the core's heartbeat interval when its answer names one."""
        body = self.manifest.model_dump_json().encode()
        answer = await self._send(http, "POST", f"{self.core_url}/v1/helpers", body)
        interval = answer.get("heartbeat_interval_s") if isinstance(answer, dict) else None
        if isinstance(interval, int | float) and interval > 0:
            self.interval_s = float(interval)
        self.registered = True
        self.registrations += 1
        self._last_problem = ""
        logger.info(
            "helper %s registered with %s (%d capabilities)",
            self.manifest.name,
            self.core_url,
            len(self.manifest.capabilities),
        )

    async def heartbeat(self, http: aiohttp.ClientSession) -> bool:
        """Tell the core we are alive; False when it no longer knows us."""
        try:
            await self._send(http, "POST", f"{self._helper_url}/heartbeat")
        except _Forgotten:
            self.registered = False
            return False
        return True

    async def deregister(self) -> None:
        """Leave the core's list on shutdown; a core that is away is not waited for."""
        if not self.registered:
            return
        self.registered = False
        try:
            async with aiohttp.ClientSession(timeout=self._timeout) as http:
                await self._send(http, "DELETE", self._helper_url)
        except PatchbayError as exc:
            logger.warning("could not deregister helper %s: %s", self.manifest.name, exc.message)
        else:
            logger.info("helper %s deregistered", self.manifest.name)

    async def _send(
        self, http: aiohttp.ClientSession, method: str, url: str, body: bytes | None = None
    ) -> object:
        headers = {HELPER_KEY_HEADER: self._key, "Content-Type": "application/json"}
        try:
            async with http.request(method, url, data=body, headers=headers) as response:
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise CoreUnreachable(f"the core at {self.core_url} is not answering ({exc})") from exc
        if status == 404 and method != "POST":
            raise _Forgotten(url)
        if status >= 400:
            raise _refusal(status, raw, self.core_url)
        try:
            return orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError as exc:  # a proxy's page, or not a patchbay core at all
            raise CoreUnreachable(
                f"the core at {self.core_url} answered {status} with what is not JSON "
                f"({raw[:100].decode(errors='replace')!r}); is that the core's URL?"
            ) from exc

    async def _wait_until_serving(self, http: aiohttp.ClientSession) -> None:
        """Registering before our own port answers would invite a core that probes to fail."""
        deadline = time.monotonic() + self._ready_timeout_s
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{self.manifest.base_url}/health") as response:
                    if response.status == 200:
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.05)

    def _report(self, problem: str) -> None:
        """Log a problem once, not at every retry."""
        if problem != self._last_problem:
            logger.error(
                "helper %s is not registered (%s); retrying every %.1fs",
                self.manifest.name,
                problem,
                self.interval_s,
            )
            self._last_problem = problem


class _Forgotten(PatchbayError):
    code = "helper_not_found"
    status = 404


def _refusal(status: int, raw: bytes, core_url: str) -> PatchbayError:
    try:
        detail = orjson.loads(raw)["error"]["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        detail = raw[:200].decode(errors="replace")
    if status == 401:
        return AuthenticationFailed(
            f"the core refused the helper key ({detail}); use the installation's helper key"
        )
    if status == 403:
        return PermissionDenied(f"the core refused this helper: {detail}")
    if status == 409:
        return Conflict(f"the core refused this helper's name: {detail}")
    if status in (400, 422):
        return InvalidRequest(f"the core refused the manifest: {detail}")
    return PatchbayError(f"the core at {core_url} answered {status}: {detail}")
