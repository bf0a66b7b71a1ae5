"""In-memory limits of the SMS channel: message ids already answered (Twilio delivers again
when a webhook is slow), senders who flood, and the pace of sending from one number.

All of it lives in the channel's one process and is forgotten on restart: a delivery repeated
across a restart is answered again, which is the price of needing no store.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Literal

Clock = Callable[[], float]


class SeenIds:
    """The newest `size` message ids; older ones are forgotten, so memory stays bounded."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, message_id: str) -> bool:
        """Remember `message_id`; False when it was already there (a repeated delivery)."""
        if message_id in self._ids:
            return False
        self._ids[message_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True


class FloodGate:
    """At most `per_minute` messages from one sender in any minute. The first one over is
    answered (`warn`), later ones are dropped silently until the sender slows down."""

    def __init__(self, per_minute: int, *, clock: Clock = time.monotonic) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._times: dict[str, deque[float]] = {}
        self._warned: set[str] = set()

    def check(self, sender: str) -> Literal["pass", "warn", "drop"]:
        now = self._clock()
        times = self._times.setdefault(sender, deque())
        while times and times[0] <= now - 60:
            times.popleft()
        if len(times) < self._per_minute:
            times.append(now)
            self._warned.discard(sender)
            self._prune(now)
            return "pass"
        if sender in self._warned:
            return "drop"
        self._warned.add(sender)
        return "warn"

    def _prune(self, now: float) -> None:
        if len(self._times) > 10_000:
            for sender in [s for s, t in self._times.items() if not t or t[-1] <= now - 60]:
                del self._times[sender]
                self._warned.discard(sender)


class Pacer:
    """Spaces what one number sends: Twilio takes about one segment a second from a long code
    and queues, then refuses, the rest."""

    def __init__(self, segments_per_s: float, *, clock: Clock = time.monotonic) -> None:
        self._interval = 1 / segments_per_s
        self._clock = clock
        self._next: dict[str, float] = {}

    async def wait(self, number: str, segments: int) -> None:
        """Wait for `number`'s turn to send `segments` segments (and book the time they take)."""
        now = self._clock()
        start = max(now, self._next.get(number, now))
        self._next[number] = start + segments * self._interval
        if start > now:
            await asyncio.sleep(start - now)
