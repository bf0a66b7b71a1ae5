"""The channels' in-memory limits on a fake clock: repeated ids, sender rates and floods, pacing,
per-thread locks."""

from __future__ import annotations

import asyncio

from patchbay.channels.limits import FloodGate, InOrder, KeyedLock, Pacer, RecentIds, SenderRate


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


def test_a_seen_id_is_refused_once_and_old_ids_are_forgotten() -> None:
    seen = RecentIds(size=2)
    assert seen.add("a") and not seen.add("a")
    assert "a" in seen
    assert seen.add("b") and seen.add("c")
    assert seen.add("a")  # pushed out by b and c


def test_recent_ids_forget_the_least_recently_seen() -> None:
    keys = RecentIds(size=2)
    for key in ("a", "b", "a", "c"):
        keys.add(key)
    assert "a" in keys and "c" in keys and "b" not in keys
    keys.discard("a")
    assert "a" not in keys


def test_a_sender_over_the_limit_waits_until_the_window_moves() -> None:
    clock = FakeClock()
    rate = SenderRate(2, 60, clock=clock)
    assert [rate.take("ann"), rate.take("ann")] == [0.0, 0.0]
    assert rate.take("ann") == 60.0 and rate.wait_s("ann") == 60.0
    assert rate.take("bob") == 0.0  # others are not held back
    clock.now += 30
    assert rate.wait_s("ann") == 30.0
    clock.now += 30
    assert rate.take("ann") == 0.0


def test_the_rate_limit_remembers_a_bounded_number_of_senders() -> None:
    rate = SenderRate(1, max_senders=2)
    for sender in ("a", "b", "c"):
        rate.take(sender)
    assert rate.wait_s("a") == 0.0 and rate.wait_s("c") > 0


def test_a_flooding_sender_is_warned_once_then_dropped_until_the_minute_passes() -> None:
    clock = FakeClock()
    gate = FloodGate(2, clock=clock)
    assert [gate.check("ann") for _ in range(4)] == ["pass", "pass", "warn", "drop"]
    assert gate.check("bob") == "pass"
    clock.now += 61
    assert gate.check("ann") == "pass"
    assert [gate.check("ann") for _ in range(2)] == ["pass", "warn"]  # warned again, later


def test_a_flood_gate_slides_its_window() -> None:
    clock = FakeClock()
    gate = FloodGate(2, clock=clock)
    gate.check("ann")
    clock.now += 40
    gate.check("ann")
    clock.now += 30  # the first is over a minute old, the second is not
    assert gate.check("ann") == "pass"
    assert gate.check("ann") == "warn"


def test_a_flood_gate_forgets_the_oldest_senders() -> None:
    clock = FakeClock()
    gate = FloodGate(1, clock=clock, max_senders=5)
    for n in range(6):
        gate.check(f"sender-{n}")
    assert gate.check("sender-0") == "pass"  # forgotten: five came after
    assert gate.check("sender-5") == "warn"


async def test_a_pacer_spaces_messages_to_one_key_but_not_across_keys() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    await pacer.wait("chat-1", 1.0)
    await pacer.wait("chat-1", 1.0)
    await pacer.wait("chat-2", 1.0)
    await pacer.wait("chat-1", 1.0)
    assert clock.slept == [1.0, 1.0]


async def test_a_pacer_books_each_wait_its_own_interval() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    await pacer.wait("+1", 1.5)  # three segments at two a second: at once, and books 1.5 s
    await pacer.wait("+1", 0.5)
    await pacer.wait("+2", 0.5)  # another number is not held up
    clock.now += 10
    await pacer.wait("+1", 0.5)
    assert clock.slept == [1.5]


async def test_a_pacer_holds_a_key_for_a_retry_after() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    pacer.hold("chat-1", 7.0)
    await pacer.wait("chat-1", 1.0)
    assert clock.slept == [7.0]


async def test_a_pacer_forgets_keys_it_no_longer_waits_for() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep, max_keys=3)
    for n in range(10):
        await pacer.wait(f"chat-{n}", 1.0)
        clock.now += 2
    assert len(pacer._next) <= 4


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


async def test_in_order_places_are_kept_in_the_order_they_were_taken() -> None:
    answers = InOrder()
    order: list[str] = []
    places = [answers.line_up("chat") for _ in range(3)]  # taken at once, none waited for

    async def answer(index: int, delay: float) -> None:
        async with places[index]:
            await asyncio.sleep(delay)
            order.append(f"answer {index}")

    # the last is ready first, and the first last: they still go out in their places' order
    await asyncio.gather(answer(2, 0), answer(1, 0.01), answer(0, 0.03))
    assert order == ["answer 0", "answer 1", "answer 2"]
    assert len(answers) == 0


async def test_a_place_given_up_lets_the_next_one_go() -> None:
    answers = InOrder()
    first, second = answers.line_up("chat"), answers.line_up("chat")
    entered = asyncio.Event()

    async def hold_first() -> None:
        async with first:
            entered.set()
            await asyncio.sleep(3600)

    async def wait_second() -> None:
        async with second:
            return

    holding = asyncio.create_task(hold_first())
    waiting = asyncio.create_task(wait_second())
    await entered.wait()
    await asyncio.sleep(0.01)
    assert not waiting.done()  # behind the first
    holding.cancel()  # the first one's sender went away
    await asyncio.wait_for(waiting, 1)
    assert len(answers) == 0


async def test_a_place_cancelled_while_it_waits_keeps_the_next_one_behind_the_first() -> None:
    answers = InOrder()
    first, second, third = (answers.line_up("chat") for _ in range(3))
    order: list[str] = []
    entered, leave = asyncio.Event(), asyncio.Event()

    async def hold_first() -> None:
        async with first:
            entered.set()
            await leave.wait()
            order.append("first out")

    async def never_second() -> None:
        async with second:
            order.append("second in")

    async def then_third() -> None:
        async with third:
            order.append("third in")

    holding = asyncio.create_task(hold_first())
    await entered.wait()
    giving_up = asyncio.create_task(never_second())
    behind = asyncio.create_task(then_third())
    await asyncio.sleep(0.01)
    giving_up.cancel()  # its sender went away: the third still waits for the first
    await asyncio.sleep(0.01)
    assert order == []
    leave.set()
    await asyncio.wait_for(asyncio.gather(holding, behind), 1)
    assert order == ["first out", "third in"]
    assert len(answers) == 0
