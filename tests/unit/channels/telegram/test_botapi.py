"""The Bot API client against a fake session: retries, 429s, refusals, downloads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import pytest
from pydantic import SecretStr

from patchbay.channels.telegram.botapi import BotApi, BotApiError, Pace
from patchbay.errors import PayloadTooLarge


class FakeResponse:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        self.content = self
        self.content_length = None  # sent chunked: the size is found by reading

    async def json(self, content_type: str | None = None) -> Any:
        if isinstance(self.body, bytes):
            raise ValueError("not JSON")
        return self.body

    async def iter_any(self) -> AsyncIterator[bytes]:
        assert isinstance(self.body, bytes)
        for start in range(0, len(self.body), 4):  # in pieces, as they come off the network
            yield self.body[start : start + 4]

    async def __aenter__(self) -> FakeResponse:
        return self

    async def __aexit__(self, *_: object) -> None:
        pass


class FakeSession:
    def __init__(self, *answers: tuple[int, Any] | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, Any]] = []

    def _next(self, url: str, body: Any) -> FakeResponse:
        self.calls.append((url, body))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return FakeResponse(*answer)

    def post(self, url: str, *, json: Any, timeout: Any) -> FakeResponse:
        return self._next(url, json)

    def get(self, url: str, *, timeout: Any) -> FakeResponse:
        return self._next(url, None)


def api(session: FakeSession, slept: list[float]) -> BotApi:
    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 2))

    return BotApi(
        lambda: cast(aiohttp.ClientSession, session),
        base_url="https://bots.example/",
        token=SecretStr("1:abc"),
        pace=Pace(chat_s=0, group_s=0, all_s=0),
        sleep=sleep,
    )


OK = (200, {"ok": True, "result": {"message_id": 1}})


async def test_send_message_speaks_the_wire_format() -> None:
    session = FakeSession(OK)
    await api(session, []).send_message(42, "hi", reply_to=7)
    url, body = session.calls[0]
    assert url == "https://bots.example/bot1:abc/sendMessage"
    assert body["chat_id"] == 42 and body["text"] == "hi" and body["reply_to_message_id"] == 7


async def test_a_429_waits_its_retry_after_then_sends() -> None:
    too_many = {"ok": False, "error_code": 429, "parameters": {"retry_after": 3}}
    session = FakeSession((429, too_many), OK)
    slept: list[float] = []
    await api(session, slept).send_message(42, "hi")
    assert len(session.calls) == 2 and 3.0 in slept


async def test_network_errors_and_5xx_are_retried_with_backoff() -> None:
    session = FakeSession(aiohttp.ClientConnectionError(), (502, b"bad gateway"), OK)
    slept: list[float] = []
    await api(session, slept).send_message(42, "hi")
    assert len(session.calls) == 3 and slept == [1.0, 2.0]


async def test_a_refusal_is_not_retried() -> None:
    forbidden = {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked"}
    session = FakeSession((403, forbidden))
    with pytest.raises(BotApiError, match="bot was blocked"):
        await api(session, []).send_message(42, "hi")
    assert len(session.calls) == 1


async def test_it_gives_up_after_a_few_tries_without_a_last_wait() -> None:
    session = FakeSession(*[(500, {"ok": False, "description": "oops"})] * 4)
    slept: list[float] = []
    with pytest.raises(BotApiError, match="oops"):
        await api(session, slept).send_message(42, "hi")
    assert len(session.calls) == 4 and slept == [1.0, 2.0, 4.0]


async def test_a_last_429_is_not_waited_for_but_holds_back_what_is_sent_next() -> None:
    too_many = {"ok": False, "error_code": 429, "parameters": {"retry_after": 3}}
    session = FakeSession(*[(429, too_many)] * 4)
    slept: list[float] = []
    client = api(session, slept)
    with pytest.raises(BotApiError) as raised:
        await client.call("getUpdates", {})  # not paced: the retry_after is waited here
    assert raised.value.retryable and len(session.calls) == 4 and slept == [3.0, 3.0, 3.0]
    session.answers.append(OK)
    await client.send_message(42, "again")
    assert len(slept) == 4 and slept[3] > 0  # the last retry_after, waited by what came next


async def test_downloads_stop_at_the_limit() -> None:
    session = FakeSession((200, b"x" * 11), (200, b"x" * 10), (404, b""))
    client = api(session, [])
    with pytest.raises(PayloadTooLarge):
        await client.download("documents/a", max_bytes=10)
    assert await client.download("documents/b", max_bytes=10) == b"x" * 10
    assert session.calls[1][0] == "https://bots.example/file/bot1:abc/documents/b"
    with pytest.raises(BotApiError, match="404"):
        await client.download("documents/c", max_bytes=10)


async def test_a_group_that_became_a_supergroup_says_where_it_went() -> None:
    moved = {
        "ok": False,
        "description": "Bad Request: group chat was upgraded to a supergroup chat",
        "parameters": {"migrate_to_chat_id": -1001234},
    }
    with pytest.raises(BotApiError) as refused:
        await api(FakeSession((400, moved)), []).send_message(-42, "hi")
    assert refused.value.migrated_to == -1001234 and not refused.value.retryable
