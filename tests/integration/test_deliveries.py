"""A channel's message delivered again is refused by the core (409 `duplicate_delivery`), on
SQLite and on PostgreSQL, however many copies arrive at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from patchbay.client import CoreClient
from patchbay.errors import DuplicateDelivery
from patchbay.schemas.turns import TurnCreate, TurnRead
from tests.conftest import make_settings
from tests.support.databases import postgres_database
from tests.support.stack import Stack, register_models, running_stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def any_stack(
    request: pytest.FixtureRequest, tmp_path: Path, upstream: MockUpstream
) -> Iterator[Stack]:
    if request.param == "sqlite":
        with running_stack(make_settings(tmp_path)) as stack:
            register_models(stack, upstream.base_url)
            yield stack
        return
    with (
        postgres_database() as url,
        running_stack(make_settings(tmp_path, database_url=url)) as stack,
    ):
        register_models(stack, upstream.base_url)
        yield stack


def test_the_same_delivery_twice_is_one_turn_and_a_409(any_stack: Stack) -> None:
    turn = {"channel": "sms", "thread": "+15550001", "text": "hi", "delivery_id": "SM1"}
    with any_stack.admin() as core:
        first = core.post("/v1/turns", json=turn)
        assert first.status_code == 202, first.text
        again = core.post("/v1/turns", json=turn)
        assert again.status_code == 409
        taken = first.json()
        assert again.json()["error"] == {
            "code": "duplicate_delivery",
            "message": again.json()["error"]["message"],
            "retryable": False,
            "chat_id": taken["chat_id"],
            "message_id": taken["user_message_id"],
            "job_id": taken["job_id"],
        }
        (chat,) = core.get("/v1/chats").json()
        assert len(core.get(f"/v1/chats/{chat['id']}/messages").json()) == 2
        assert core.post("/v1/turns", json={**turn, "delivery_id": "SM2"}).status_code == 202


async def test_ten_copies_at_once_make_one_turn(any_stack: Stack) -> None:
    turn = TurnCreate(channel="email", thread="<t@x>", text="hi", delivery_id="<m1@x>")
    async with CoreClient(any_stack.core_url, api_key=any_stack.admin_key) as client:
        results = await asyncio.gather(
            *[client.call_as(TurnRead, "POST", "/v1/turns", body=turn) for _ in range(10)],
            return_exceptions=True,
        )
    (taken,) = [r for r in results if isinstance(r, TurnRead)]
    refused = [r for r in results if isinstance(r, DuplicateDelivery)]
    assert len(refused) == 9, results
    assert {r.job_id for r in refused} == {taken.job_id}
    assert len(any_stack.chats()) == 1
