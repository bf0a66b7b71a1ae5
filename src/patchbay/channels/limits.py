"""The in-memory limits every people's channel uses: ids already seen, senders who write too
fast, the pace of sending, one message at a time per thread, and answers in order. All bounded,
and forgotten on restart: the core, not this memory, is what finally refuses a delivery answered
before.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Literal

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
# What to do with a sender's message: take it; refuse it and tell them once; refuse it quietly.
Verdict = Literal["pass", "warn", "drop"]


class RecentIds:
    """The last `size` ids seen (message ids, delivery keys); the least recently seen go first."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def add(self, key: str) -> bool:
        """Remember `key`; False when it was there already (a repeated delivery)."""
        if key in self._ids:
            self._ids.move_to_end(key)
            return False
        self._ids[key] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True

    def discard(self, key: str) -> None:
        self._ids.pop(key, None)


class SenderRate:
    """At most `limit` messages per sender in any `window_s` seconds (a sliding window), for the
    last `max_senders` senders seen."""

    def __init__(
        self,
        limit: int,
        window_s: float = 60.0,
        *,
        max_senders: int = 10_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._max_senders = max_senders
        self._clock = clock
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def wait_s(self, sender: str) -> float:
        """0 if `sender` may send now, else how long until they may."""
        times = self._recent(sender)
        if len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window_s - self._clock())

    def take(self, sender: str) -> float:
        """Count one message from `sender` if they may send now; returns `wait_s` otherwise."""
        wait = self.wait_s(sender)
        if wait == 0.0:
            self._times[sender].append(self._clock())
        return wait

    def _recent(self, sender: str) -> deque[float]:
        times = self._times.setdefault(sender, deque())
        self._times.move_to_end(sender)
        cutoff = self._clock() - self.window_s
        while times and times[0] <= cutoff:
            times.popleft()
        while len(self._times) > self._max_senders:
            self._times.popitem(last=False)
        return times


class FloodGate:
    """A `SenderRate` for channels that cannot ask a sender to retry: over the limit, the first
    message is refused with a notice (`warn`), the rest quietly (`drop`) until the window moves."""

    def __init__(
        self,
        limit: int,
        window_s: float = 60.0,
        *,
        max_senders: int = 10_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self._rate = SenderRate(limit, window_s, max_senders=max_senders, clock=clock)
        self._warned = RecentIds(max_senders)

    def check(self, sender: str) -> Verdict:
        if self._rate.take(sender) == 0.0:
            self._warned.discard(sender)
            return "pass"
        return "warn" if self._warned.add(sender) else "drop"


class Pacer:
    """Spaces calls per key: each `wait(key, interval_s)` returns at least the previous call's
    interval after it (a chat's one message a second, an SMS number's segments).

    A wait reserves its slot before sleeping, so concurrent senders to one key queue up in order.
    """

    def __init__(
        self, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep, max_keys: int = 10_000
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._max_keys = max_keys
        self._next: dict[str, float] = {}

    async def wait(self, key: str, interval_s: float) -> None:
        """Wait for `key`'s turn, and book `interval_s` after it for the next one."""
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


class InOrder:
    """Work per key done in the order it was lined up: `line_up(key)` takes a place at once
    (no waiting); entering the place waits until every earlier place of the key was left."""

    def __init__(self) -> None:
        self._last: dict[str, asyncio.Future[None]] = {}

    def line_up(self, key: str) -> AbstractAsyncContextManager[None]:
        before = self._last.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._last[key] = mine
        return self._place(key, before, mine)

    @asynccontextmanager
    async def _place(
        self, key: str, before: asyncio.Future[None] | None, mine: asyncio.Future[None]
    ) -> AsyncIterator[None]:
        try:
            if before is not None:
                await asyncio.wait({before})  # not `await before`: a cancel here is ours alone
            yield
        finally:
            if before is None or before.done():
                self._leave(key, mine)
            else:  # given up while it waited: the places after it still wait for those before
                before.add_done_callback(lambda _: self._leave(key, mine))

    def _leave(self, key: str, mine: asyncio.Future[None]) -> None:
        mine.set_result(None)
        if self._last.get(key) is mine:
            del self._last[key]

    def __len__(self) -> int:
        return len(self._last)
