"""The core asks each MCP server for a ping on its own: one whose ping hangs never holds up the
others' next rounds (which made them shown down on a slow machine)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchbay.config import HelperSettings
from patchbay.core import mcp
from patchbay.core.helpers import HelperRegistry
from patchbay.schemas.helpers import Capability, HelperManifest
from patchbay.store import helpers as rows
from patchbay.store.db import Database


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[HelperRegistry]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    await db.migrate()
    helpers = HelperRegistry(db, HelperSettings(), key="k", down_after_s=30)
    for name in ("stuck", "fine"):
        manifest = HelperManifest(
            name=name,
            base_url=f"http://127.0.0.1:1/{name}",
            protocol="mcp",
            capabilities=[Capability(name="tool", description="a tool")],
        )
        async with db.begin() as conn:
            await rows.upsert_helper(
                conn, manifest, datetime(2026, 1, 1, tzinfo=UTC), host="localhost"
            )
    try:
        yield helpers
    finally:
        await helpers.close()
        await db.close()


async def test_a_hanging_ping_holds_up_no_other_server(
    registry: HelperRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: Counter[str] = Counter()
    never = asyncio.Event()

    async def ping(url: str, *, timeout_s: float) -> bool:
        asked[url] += 1
        if url.endswith("stuck"):
            await never.wait()
        return True

    monkeypatch.setattr(mcp, "ping", ping)
    for _ in range(3):
        await asyncio.wait_for(registry.ping_mcp(), 5)
        await asyncio.sleep(0.05)
    assert asked == {"http://127.0.0.1:1/stuck": 1, "http://127.0.0.1:1/fine": 3}
    listed = {h.name: h.state for h in await registry.list_helpers()}
    assert listed == {"stuck": "down", "fine": "up"}


@pytest.mark.parametrize("removed_by", ["this core", "another core"])
async def test_a_removed_servers_ping_is_stopped(
    registry: HelperRegistry, monkeypatch: pytest.MonkeyPatch, removed_by: str
) -> None:
    stopped = asyncio.Event()

    async def ping(url: str, *, timeout_s: float) -> bool:
        if url.endswith("stuck"):
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                stopped.set()
                raise
        return True

    monkeypatch.setattr(mcp, "ping", ping)
    await registry.ping_mcp()
    await asyncio.sleep(0.05)
    if removed_by == "this core":
        await registry.deregister("stuck")
    else:  # this core learns it at its next round
        async with registry._db.begin() as conn:
            await rows.delete_helper(conn, "stuck")
        await registry.ping_mcp()
    await asyncio.wait_for(stopped.wait(), 5)  # not left out, nor kept after close()


async def test_the_store_closes_after_pings_cut_short_by_close(
    registry: HelperRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def ping(url: str, *, timeout_s: float) -> bool:
        return True  # each goes on to mark its server seen, in the store

    monkeypatch.setattr(mcp, "ping", ping)
    await registry.ping_mcp()
    await asyncio.sleep(0)  # the pings are writing
    pings = list(registry._pings.values())
    await registry.close()
    assert all(ping.done() for ping in pings)  # before the hub closes the store they write to
