"""TtlCache: values kept for a while, and one lookup at a time per key."""

from __future__ import annotations

import asyncio

import pytest

from patchbay.cache import TtlCache


class Source:
    """A lookup that counts its calls and answers when told to."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.value = "first"
        self.error: Exception | None = None

    async def __call__(self) -> str:
        self.calls += 1
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.value


async def test_callers_that_miss_together_share_one_lookup() -> None:
    cache: TtlCache[str, str] = TtlCache(60)
    source = Source()
    callers = [asyncio.create_task(cache.get("k", source)) for _ in range(50)]
    await asyncio.sleep(0.01)
    source.release.set()
    assert await asyncio.gather(*callers) == ["first"] * 50
    assert await cache.get("k", source) == "first"
    assert source.calls == 1


async def test_a_value_is_looked_up_again_once_it_expires() -> None:
    cache: TtlCache[str, str] = TtlCache(0.05)
    source = Source()
    source.release.set()
    assert await cache.get("k", source) == "first"
    source.value = "second"
    assert await cache.get("k", source) == "first"
    await asyncio.sleep(0.1)
    assert await cache.get("k", source) == "second"
    assert source.calls == 2


async def test_a_failed_lookup_reaches_every_waiter_and_is_not_kept() -> None:
    cache: TtlCache[str, str] = TtlCache(60)
    source = Source()
    source.error = LookupError("nobody")
    callers = [asyncio.create_task(cache.get("k", source)) for _ in range(3)]
    await asyncio.sleep(0.01)
    source.release.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert [str(o) for o in outcomes] == ["nobody"] * 3
    source.error = None
    assert await cache.get("k", source) == "first"
    assert source.calls == 2


async def test_a_lookup_under_way_when_the_cache_is_cleared_is_not_kept() -> None:
    cache: TtlCache[str, str] = TtlCache(60)
    source = Source()
    early = asyncio.create_task(cache.get("k", source))
    await asyncio.sleep(0.01)
    cache.clear()  # what the lookup reads may have changed
    fresh = Source()
    fresh.value = "changed"
    fresh.release.set()
    assert await cache.get("k", fresh) == "changed"
    source.release.set()
    assert await early == "first"  # its caller gets what it waited for
    assert await cache.get("k", fresh) == "changed"  # but it is not kept
    assert fresh.calls == 1


async def test_a_caller_that_goes_away_leaves_the_lookup_to_the_others() -> None:
    cache: TtlCache[str, str] = TtlCache(60)
    source = Source()
    leaving = asyncio.create_task(cache.get("k", source))
    staying = asyncio.create_task(cache.get("k", source))
    await asyncio.sleep(0.01)
    leaving.cancel()
    source.release.set()
    assert await staying == "first"
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert source.calls == 1
