"""Pacing, flood gates, per-thread locks and repeated ids, on a fake clock."""

from __future__ import annotations

import asyncio

from patchbay.channels.telegram.limits import FloodGate, KeyedLock, Pacer, RecentIds


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


async def test_a_pacer_spaces_messages_to_one_chat_but_not_across_chats() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    await pacer.wait("chat-1", 1.0)
    await pacer.wait("chat-1", 1.0)
    await pacer.wait("chat-2", 1.0)
    await pacer.wait("chat-1", 1.0)
    assert clock.slept == [1.0, 1.0]


async def test_a_pacer_holds_a_chat_for_a_retry_after() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    pacer.hold("chat-1", 7.0)
    await pacer.wait("chat-1", 1.0)
    assert clock.slept == [7.0]


async def test_a_pacer_forgets_chats_it_no_longer_waits_for() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep, max_keys=3)
    for n in range(10):
        await pacer.wait(f"chat-{n}", 1.0)
        clock.now += 2
    assert len(pacer._next) <= 4


def test_a_flood_gate_refuses_once_aloud_then_quietly_until_the_window_clears() -> None:
    clock = FakeClock()
    gate = FloodGate(2, 60.0, clock=clock)
    verdicts = [gate.check("ann") for _ in range(4)]
    assert verdicts == ["ok", "ok", "refuse", "refuse-quietly"]
    assert gate.check("bob") == "ok"
    clock.now += 61
    assert gate.check("ann") == "ok"


def test_a_flood_gate_forgets_idle_senders() -> None:
    clock = FakeClock()
    gate = FloodGate(1, 60.0, clock=clock, max_senders=5)
    for n in range(5):
        gate.check(f"sender-{n}")
    clock.now += 61
    gate.check("new")
    assert list(gate._seen) == ["new"]


async def test_a_keyed_lock_serialises_one_key_and_is_dropped_after() -> None:
    locks = KeyedLock()
    order: list[str] = []

    async def work(key: str, name: str, delay: float) -> None:
        async with locks.hold(key):
            order.append(f"{name} in")
            await asyncio.sleep(delay)
            order.append(f"{name} out")

    await asyncio.gather(work("a", "first", 0.02), work("a", "second", 0), work("b", "other", 0))
    assert order.index("first out") < order.index("second in")
    assert order.index("other in") < order.index("first out")
    assert len(locks) == 0


def test_recent_ids_remember_a_bounded_number() -> None:
    seen = RecentIds(size=2)
    assert seen.add("1") and seen.add("2")
    assert not seen.add("2")
    assert seen.add("3")
    assert seen.add("1")  # forgotten: the oldest went when 3 came
