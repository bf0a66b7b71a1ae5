"""What keeps a mail from being answered twice and a sender from flooding: bounded, in memory."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class RecentKeys:
    """The last `capacity` keys seen (Message-IDs), oldest forgotten first."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)


class SenderRate:
    """At most `limit` mails per sender in any `window_s` seconds (a sliding window)."""

    def __init__(
        self,
        limit: int,
        *,
        window_s: float = 60.0,
        senders: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.senders = senders
        self._clock = clock
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def wait_s(self, sender: str) -> float:
        """0 if `sender` may send now, else how long until they may."""
        times = self._recent(sender)
        if len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window_s - self._clock())

    def take(self, sender: str) -> float:
        """Count one mail from `sender` if they may send now; returns `wait_s` otherwise."""
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
        while len(self._times) > self.senders:
            self._times.popitem(last=False)
        return times
