"""Sending SMS through Twilio's REST API: credentials, retries, refusals."""

from __future__ import annotations

import base64
import json
from types import TracebackType
from typing import Any

import aiohttp
import pytest

from patchbay.channels.sms.outbound import SmsNotSent, TwilioMessages
from patchbay.channels.sms.twilio_format import TwilioSettings

SETTINGS = TwilioSettings(
    account_sid="AC1", auth_token="token", api_base_url="https://twilio.test/"
)


class FakeResponse:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self._body = body

    async def read(self) -> bytes:
        return self._body

    async def __aenter__(self) -> FakeResponse:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class FakeSession:
    """Answers each POST with the next of `answers` (an exception is raised instead)."""

    def __init__(self, *answers: tuple[int, Any] | Exception) -> None:
        self.answers = list(answers)
        self.posts: list[dict[str, Any]] = []

    def post(self, url: str, **kwargs: Any) -> FakeResponse:
        self.posts.append({"url": url, **kwargs})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        return FakeResponse(status, body if isinstance(body, bytes) else json.dumps(body).encode())


def messages(session: FakeSession, settings: TwilioSettings = SETTINGS) -> TwilioMessages:
    http: Any = lambda: session  # noqa: E731 - stands in for the channel's session getter
    return TwilioMessages(settings, http, segments_per_s=1000, backoff_s=0)


async def test_a_message_is_posted_with_the_accounts_credentials() -> None:
    session = FakeSession((201, {"sid": "SM1", "status": "queued"}))
    assert await messages(session).send(to="+1", from_="+2", body="hi") == "SM1"
    (post,) = session.posts
    assert post["url"] == "https://twilio.test/2010-04-01/Accounts/AC1/Messages.json"
    assert post["data"] == {"To": "+1", "From": "+2", "Body": "hi"}
    assert post["headers"]["Authorization"] == "Basic " + base64.b64encode(b"AC1:token").decode()


async def test_busy_or_unreachable_twilio_is_tried_again() -> None:
    session = FakeSession(
        (429, {"message": "Too Many Requests"}),
        aiohttp.ClientConnectionError("refused"),
        (201, {"sid": "SM2"}),
    )
    assert await messages(session).send(to="+1", from_="+2", body="hi") == "SM2"
    assert len(session.posts) == 3


async def test_a_refusal_is_not_tried_again() -> None:
    session = FakeSession((400, {"code": 21211, "message": "The 'To' number is not valid."}))
    with pytest.raises(SmsNotSent, match="not valid") as refused:
        await messages(session).send(to="nope", from_="+2", body="hi")
    assert len(session.posts) == 1
    assert not refused.value.retryable  # an answer owed for it is given up


async def test_giving_up_after_three_tries() -> None:
    session = FakeSession(*[(502, b"<html>bad gateway</html>")] * 3)
    with pytest.raises(SmsNotSent, match="502") as busy:
        await messages(session).send(to="+1", from_="+2", body="hi")
    assert busy.value.retryable  # an answer owed for it stays owed


async def test_no_credentials_no_sending() -> None:
    with pytest.raises(SmsNotSent, match="auth_token"):
        await messages(FakeSession(), TwilioSettings()).send(to="+1", from_="+2", body="hi")
