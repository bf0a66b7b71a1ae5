"""Every channel reports to the core that it is alive, so `/v1/status` can show it up or down."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from patchbay.client import CoreClient
from patchbay.config import Settings
from patchbay.errors import PatchbayError
from patchbay.schemas.status import Heartbeat
from patchbay.tokens import module_token


@asynccontextmanager
async def heartbeats(
    core: CoreClient, settings: Settings, *, module: str, url: str
) -> AsyncIterator[None]:
    """Report this module alive to the core for as long as the block runs."""
    task = asyncio.create_task(
        beat_forever(
            core,
            module=module,
            url=url,
            secret=settings.installation_secret(),
            interval_s=settings.status.heartbeat_interval_s,
        )
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def beat_forever(
    core: CoreClient, *, module: str, url: str, secret: str, interval_s: float
) -> None:
    """Send a heartbeat every `interval_s`; a core that is away is simply tried again."""
    beat = Heartbeat(
        module=module, kind="channel", url=url, pid=os.getpid(), started_at=datetime.now(UTC)
    )
    token = module_token(secret)
    while True:
        with contextlib.suppress(PatchbayError):
            await core.heartbeat(beat, token=token)
        await asyncio.sleep(interval_s)
