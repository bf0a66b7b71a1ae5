"""The SMS channel's in-memory limits: repeated ids, floods, sending pace."""

from __future__ import annotations

import asyncio

import pytest

from patchbay.channels.sms.limits import FloodGate, Pacer, SeenIds


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_seen_id_is_refused_once_and_old_ids_are_forgotten() -> None:
    seen = SeenIds(size=2)
    assert seen.add("a") and not seen.add("a")
    assert seen.add("b") and seen.add("c")
    assert seen.add("a")  # pushed out by b and c


def test_a_flooding_sender_is_warned_once_then_dropped_until_the_minute_passes() -> None:
    clock = Clock()
    gate = FloodGate(2, clock=clock)
    assert [gate.check("ann") for _ in range(4)] == ["pass", "pass", "warn", "drop"]
    assert gate.check("bob") == "pass"
    clock.now += 61
    assert gate.check("ann") == "pass"
    assert [gate.check("ann") for _ in range(2)] == ["pass", "warn"]  # warned again, later


def test_a_sliding_minute() -> None:
    clock = Clock()
    gate = FloodGate(2, clock=clock)
    gate.check("ann")
    clock.now += 40
    gate.check("ann")
    clock.now += 30  # the first is over a minute old, the second is not
    assert gate.check("ann") == "pass"
    assert gate.check("ann") == "warn"


async def test_the_pacer_spaces_segments_per_number(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    pacer = Pacer(2.0, clock=clock)
    await pacer.wait("+1", 3)  # at once, and books 1.5 s
    await pacer.wait("+1", 1)
    await pacer.wait("+2", 1)  # another number is not held up
    clock.now += 10
    await pacer.wait("+1", 1)
    assert slept == [1.5]
