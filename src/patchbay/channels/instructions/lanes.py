"""Fair shares of the consumer: how many generating instructions each sender has at once.

A generate is slow (the model writes for seconds or minutes) where every other instruction is
quick. Each sender (an API key) may have `per_key` generating instructions answered at once; as
many more wait here for their turn, each holding one of the consumer's prefetch slots; past that
`enter` raises `SenderBusy`, and the consumer puts them off (`deferral.py`). So one sender's
flood holds at most `per_key` of the consumer's slots, and everyone else's instructions go on
being taken.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field

from patchbay.errors import QueueFull


class SenderBusy(QueueFull):
    """A sender has as many generating instructions under way and waiting as it may."""


@dataclass
class _Lane:
    running: asyncio.Semaphore
    waiting: int = 0
    holders: int = field(default=0)  # running and waiting: the lane goes once none are left


class Ticket:
    """One generating instruction's place in its sender's lane; `release` it once answered."""

    def __init__(self, lanes: Lanes | None, name: bytes) -> None:
        self._lanes = lanes
        self._name = name

    def release(self) -> None:
        """Give the place to the next waiting instruction (once; later calls do nothing)."""
        if self._lanes is not None:
            self._lanes._leave(self._name, running=True)
            self._lanes = None


class Lanes:
    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._lanes: dict[bytes, _Lane] = {}

    def __len__(self) -> int:
        """How many senders have a generating instruction under way or waiting."""
        return len(self._lanes)

    async def enter(self, key: str | None) -> Ticket:
        """A place for one of `key`'s generating instructions, once one is free.

        Raises `SenderBusy` when `key` has `per_key` under way and as many waiting. Instructions
        without a key are not counted: the core refuses them at once.
        """
        if key is None:
            return Ticket(None, b"")
        name = hashlib.blake2b(key.encode(), digest_size=16).digest()  # never the key itself
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = _Lane(asyncio.Semaphore(self.per_key))
        elif lane.running.locked() and lane.waiting >= self.per_key:
            raise SenderBusy(
                f"this API key has {self.per_key} answers being generated and {self.per_key} "
                "more waiting; send this again once one of them is answered"
            )
        lane.holders += 1
        lane.waiting += 1
        try:
            await lane.running.acquire()
        except BaseException:
            self._leave(name, running=False)
            raise
        finally:
            lane.waiting -= 1
        return Ticket(self, name)

    def _leave(self, name: bytes, *, running: bool) -> None:
        lane = self._lanes[name]
        if running:
            lane.running.release()
        lane.holders -= 1
        if lane.holders == 0:
            del self._lanes[name]
