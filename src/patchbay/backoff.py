"""Waits between tries of something that may pass later: doubling from a first wait up to a cap,
for a number of tries or until a deadline."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits of `first_s`, then `factor` times longer each time, up to `cap_s`."""

    first_s: float
    cap_s: float = math.inf
    factor: float = 2.0

    def delays(self, tries: int | None = None) -> Iterator[float]:
        """The waits in turn: `tries` of them (one per try), or for ever."""
        first = min(self.first_s, self.cap_s)
        grown = itertools.accumulate(
            itertools.repeat(self.factor), lambda d, f: min(d * f, self.cap_s), initial=first
        )
        return itertools.islice(grown, tries)

    async def tries(
        self, count: int, *, sleep: Callable[[float], Awaitable[None]] | None = None
    ) -> AsyncIterator[int]:
        """Try numbers 1 to `count`, each try but the first after its wait (`asyncio.sleep`
        unless given): the caller leaves the loop when a try succeeds, and no wait follows the
        last one."""
        if count < 1:
            return
        yield 1
        for number, wait in enumerate(self.delays(count - 1), 2):
            await (sleep or asyncio.sleep)(wait)
            yield number

    def within(
        self, budget_s: float, *, cut: bool = True, clock: Callable[[], float] = time.monotonic
    ) -> Iterator[float]:
        """The waits until `budget_s` from now, each taken as a try fails (`next(waits, None)`:
        None says to give up): the last cut to the time left, or (`cut=False`) none that would
        end past it."""
        return self._until(clock() + budget_s, cut, clock)

    def _until(self, deadline: float, cut: bool, clock: Callable[[], float]) -> Iterator[float]:
        for delay in self.delays():
            left = deadline - clock()
            if (left <= 0) if cut else (delay > left):
                return
            yield min(delay, left)
