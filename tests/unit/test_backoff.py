import itertools
import math

import pytest

from patchbay.backoff import Backoff


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_waits_double_from_the_first_up_to_the_cap():
    assert list(Backoff(1.0, cap_s=15.0).delays(6)) == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]


def test_waits_without_a_cap_keep_doubling():
    assert list(Backoff(2.0).delays(4)) == [2.0, 4.0, 8.0, 16.0]


def test_waits_grow_by_the_factor():
    assert list(Backoff(0.5, factor=3.0).delays(3)) == [0.5, 1.5, 4.5]


def test_a_first_wait_past_the_cap_is_the_cap():
    assert list(Backoff(90.0, cap_s=60.0).delays(2)) == [60.0, 60.0]


def test_waits_without_a_count_go_on_and_never_overflow():
    waits = list(itertools.islice(Backoff(1.0).delays(), 2000))
    assert waits[1999] == math.inf
    assert list(itertools.islice(Backoff(1.0, cap_s=60.0).delays(), 1000))[-1] == 60.0


def test_no_tries_no_waits():
    assert list(Backoff(1.0).delays(0)) == []


def test_waits_within_a_budget_cut_the_last_to_the_time_left():
    clock = Clock()
    waits = Backoff(1.0, cap_s=4.0).within(10.0, clock=clock)
    taken = []
    for wait in waits:
        taken.append(wait)
        clock.now += wait
    assert taken == [1.0, 2.0, 4.0, 3.0]
    assert next(waits, None) is None


def test_waits_within_a_budget_that_must_fit_whole_stop_before_the_one_that_does_not():
    clock = Clock()
    waits = Backoff(0.25, cap_s=5.0).within(3.0, cut=False, clock=clock)
    taken = []
    for wait in waits:
        taken.append(wait)
        clock.now += wait
    assert taken == [0.25, 0.5, 1.0]  # 1.75 s gone: the next, 2 s, would end past 3 s
    assert next(waits, None) is None


def test_the_budget_counts_from_when_the_waits_are_made():
    clock = Clock()
    waits = Backoff(1.0).within(5.0, clock=clock)
    clock.now += 4.5  # a slow first try
    assert next(waits) == 0.5
    clock.now += 0.5
    assert next(waits, None) is None


def test_time_spent_trying_counts_against_the_budget():
    clock = Clock()
    waits = Backoff(1.0, cap_s=1.0).within(3.0, cut=False, clock=clock)
    assert next(waits) == 1.0
    clock.now += 1.5  # the wait, and half a second of trying
    assert next(waits) == 1.0
    clock.now += 1.0
    assert next(waits, None) is None  # 0.5 s left: a whole wait does not fit


@pytest.mark.parametrize("budget_s", [0.0, -1.0])
def test_no_budget_no_waits(budget_s):
    assert list(Backoff(1.0).within(budget_s, clock=Clock())) == []


async def test_tries_wait_between_tries_and_never_after_the_last():
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    numbers = [number async for number in Backoff(1.0, cap_s=3.0).tries(4, sleep=sleep)]
    assert numbers == [1, 2, 3, 4] and slept == [1.0, 2.0, 3.0]


async def test_a_try_that_succeeds_waits_for_nothing_more():
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async for number in Backoff(1.0).tries(5, sleep=sleep):
        if number == 2:
            break
    assert slept == [1.0]


async def test_no_tries_no_try():
    assert [number async for number in Backoff(1.0).tries(0)] == []
