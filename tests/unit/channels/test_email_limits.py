"""The bounded memory of mails seen, and the per-sender rate limit."""

from __future__ import annotations

from patchbay.channels.email.limits import RecentKeys, SenderRate


def test_recent_keys_forget_the_oldest() -> None:
    keys = RecentKeys(capacity=2)
    for key in ("a", "b", "a", "c"):
        keys.add(key)
    assert "a" in keys and "c" in keys and "b" not in keys


def test_a_sender_over_the_limit_waits_until_the_window_moves() -> None:
    now = [100.0]
    rate = SenderRate(2, window_s=60, clock=lambda: now[0])
    assert [rate.take("ann"), rate.take("ann")] == [0.0, 0.0]
    assert rate.take("ann") == 60.0 and rate.wait_s("ann") == 60.0
    assert rate.take("bob") == 0.0  # others are not held back
    now[0] += 30
    assert rate.wait_s("ann") == 30.0
    now[0] += 30
    assert rate.take("ann") == 0.0


def test_the_rate_limit_remembers_a_bounded_number_of_senders() -> None:
    rate = SenderRate(1, senders=2)
    for sender in ("a", "b", "c"):
        rate.take(sender)
    assert rate.wait_s("a") == 0.0 and rate.wait_s("c") > 0
