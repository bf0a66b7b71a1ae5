"""Waits between tries of something that may pass later: doubling from a first wait up to a cap,
for a number of tries or within a time budget. Pure (no sleeping), so every layer can use it."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits of `first_s`, then `factor` times longer each time, up to `cap_s`."""

    first_s: float
    cap_s: float = math.inf
    factor: float = 2.0

    def delays(self, tries: int | None = None) -> Iterator[float]:
        """The waits in turn: `tries` of them (one per try), or for ever."""
        return itertools.islice(self._forever(), tries)

    def within(
        self, budget_s: float, *, cut: bool = True, clock: Callable[[], float] = time.monotonic
    ) -> DeadlineWaits:
        """The waits until `budget_s` from now has passed (see `DeadlineWaits`)."""
        return DeadlineWaits(self._forever(), clock() + budget_s, cut=cut, clock=clock)

    def _forever(self) -> Iterator[float]:
        delay = min(self.first_s, self.cap_s)
        while True:
            yield delay
            delay = min(delay * self.factor, self.cap_s)


class DeadlineWaits(Iterator[float]):
    """A back-off's waits that end at a deadline: the last one cut to the time left, or
    (`cut=False`) none that would not end before it. Taken as a failure comes, with
    `next(waits, None)`: None says to give up."""

    def __init__(
        self, delays: Iterator[float], deadline: float, *, cut: bool, clock: Callable[[], float]
    ) -> None:
        self._delays = delays
        self._deadline = deadline
        self._cut = cut
        self._clock = clock
        self._next = next(delays)

    def __next__(self) -> float:
        left = self._deadline - self._clock()
        if (left <= 0) if self._cut else (self._next > left):
            raise StopIteration
        wait, self._next = min(self._next, left), next(self._delays)
        return wait
