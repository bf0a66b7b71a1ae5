"""Pacing for chat channels: outgoing messages spaced per chat (`Pacer`), senders who flood turned
away before they reach the core (`FloodGate`), and one message at a time per thread (`KeyedLock`).

Nothing here is Telegram-specific; the XMPP channel uses it too.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Literal

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Verdict = Literal["ok", "refuse", "refuse-quietly"]


class Pacer:
    """Spaces calls per key: each `wait(key)` returns at least `interval_s` after the previous one.

    A wait reserves its slot before sleeping, so concurrent senders to one chat queue up in order.
    """

    def __init__(
        self, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep, max_keys: int = 10_000
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._max_keys = max_keys
        self._next: dict[str, float] = {}

    async def wait(self, key: str, interval_s: float) -> None:
        now = self._clock()
        at = max(now, self._next.get(key, now))
        self._next[key] = at + interval_s
        if len(self._next) > self._max_keys:
            self._forget_past(now)
        if at > now:
            await self._sleep(at - now)

    def hold(self, key: str, delay_s: float) -> None:
        """Send nothing for `key` for `delay_s` (a 429's `retry_after`)."""
        self._next[key] = max(self._next.get(key, 0.0), self._clock() + delay_s)

    def _forget_past(self, now: float) -> None:
        for key in [key for key, at in self._next.items() if at <= now]:
            del self._next[key]


class FloodGate:
    """At most `limit` messages per sender in `window_s`; over it, the first refusal is worth a
    notice (`refuse`) and the rest are dropped quietly (`refuse-quietly`) until the window clears."""

    def __init__(
        self,
        limit: int,
        window_s: float = 60.0,
        *,
        clock: Clock = time.monotonic,
        max_senders: int = 10_000,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._max_senders = max_senders
        self._seen: dict[str, deque[float]] = {}
        self._told: set[str] = set()

    def check(self, sender: str) -> Verdict:
        now = self._clock()
        if len(self._seen) >= self._max_senders:
            self._forget_idle(now)
        times = self._seen.setdefault(sender, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) < self.limit:
            times.append(now)
            self._told.discard(sender)
            return "ok"
        if sender in self._told:
            return "refuse-quietly"
        self._told.add(sender)
        return "refuse"

    def _forget_idle(self, now: float) -> None:
        cutoff = now - self.window_s
        for sender in [s for s, times in self._seen.items() if not times or times[-1] <= cutoff]:
            del self._seen[sender]
            self._told.discard(sender)


class KeyedLock:
    """One lock per key, made on demand and dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class RecentIds:
    """The last `size` ids seen, to answer a message delivered twice only once."""

    def __init__(self, size: int = 10_000) -> None:
        self._ids: dict[str, None] = {}
        self._size = size

    def add(self, key: str) -> bool:
        """Remember `key`; False when it was already there."""
        if key in self._ids:
            return False
        self._ids[key] = None
        if len(self._ids) > self._size:
            del self._ids[next(iter(self._ids))]
        return True
