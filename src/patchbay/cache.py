"""A cache of values looked up for a few seconds, each looked up once at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values by key for `ttl_s` after their lookup. Callers that miss the same key together
    share one lookup: when a value expires under load, every request in flight would otherwise
    look it up at once. A failed lookup is not kept (the next caller looks again)."""

    def __init__(self, ttl_s: float, *, max_size: int = 10_000) -> None:
        self._ttl = ttl_s
        self._max_size = max_size
        self._values: dict[K, tuple[float, V]] = {}
        self._pending: dict[K, asyncio.Future[V]] = {}
        self._generation = 0  # moved on by `clear`: a lookup begun before it is not kept

    async def get(self, key: K, lookup: Callable[[], Awaitable[V]]) -> V:
        hit = self._values.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._look_up(key, lookup, self._generation))
            pending.add_done_callback(_retrieve)
            self._pending[key] = pending
        # One caller going away does not stop the lookup the others wait for.
        return await asyncio.shield(pending)

    async def _look_up(self, key: K, lookup: Callable[[], Awaitable[V]], generation: int) -> V:
        try:
            value = await lookup()
        finally:
            if generation == self._generation:
                del self._pending[key]
        if generation == self._generation:
            if len(self._values) >= self._max_size:
                self._values.clear()
            self._values[key] = (time.monotonic() + self._ttl, value)
        return value

    def clear(self) -> None:
        """Forget every value, and any lookup under way (it may have read what has changed)."""
        self._values.clear()
        self._pending.clear()
        self._generation += 1


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a failed lookup's error as seen: every caller that waited for it got it already, and
    one nobody waited for any more (all went away) is not worth a warning."""
    if not future.cancelled():
        future.exception()
