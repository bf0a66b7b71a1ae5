"""Handing a reply to the SMTP relay: tried `tries` times, the waits between them doubling."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import pytest

from patchbay.channels.email.relay import Relay, RelayUnavailable
from patchbay.channels.email.settings import RelaySettings


class AwayRelay(Relay):
    """A relay away for its first `away` tries."""

    def __init__(self, away: int, *, tries: int) -> None:
        super().__init__(RelaySettings(), tries=tries, retry_s=0.5)
        self.away = away
        self.sent = 0

    async def send(self, message: EmailMessage) -> None:
        self.sent += 1
        if self.sent <= self.away:
            raise RelayUnavailable("the relay is away")


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return waits


def reply() -> EmailMessage:
    message = EmailMessage()
    message["To"] = "ann@example.org"
    message["Message-ID"] = "<r1@example.org>"
    return message


async def test_a_relay_back_before_the_last_try_takes_the_reply(slept: list[float]) -> None:
    relay = AwayRelay(away=2, tries=4)
    assert await relay.deliver(reply())
    assert relay.sent == 3
    assert slept == [0.5, 1.0]


async def test_a_relay_away_for_every_try_is_given_up_without_a_last_wait(
    slept: list[float],
) -> None:
    relay = AwayRelay(away=10, tries=4)
    assert not await relay.deliver(reply())
    assert relay.sent == 4
    assert slept == [0.5, 1.0, 2.0]
