"""A channel's message delivered again is refused by the core (409 `duplicate_delivery`), on
SQLite and on PostgreSQL, however many copies arrive at once; an answer given a `reply` is owed to
its channel until the channel says it sent it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from patchbay.client import CoreClient
from patchbay.errors import DuplicateDelivery
from patchbay.schemas.senders import MODULE_TOKEN_HEADER
from patchbay.schemas.turns import TurnCreate, TurnRead
from patchbay.tokens import module_token
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
            "owed": False,  # no `reply`: the channel answers it itself, nothing is owed
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


REPLY = {"sender": "ann@example.org", "subject": "Hi", "references": ["<root@x>"]}


def test_an_answer_with_a_reply_is_owed_until_its_channel_sent_it(any_stack: Stack) -> None:
    module = {MODULE_TOKEN_HEADER: module_token(any_stack.settings.installation_secret())}
    owed_url = "/v1/deliveries/owed"
    turn = {"channel": "email", "text": "hi", "delivery_id": "<m1@x>", "reply": REPLY}
    with any_stack.admin() as core:
        taken = core.post("/v1/turns?wait=true", json=turn).json()["turn"]
        others = (
            {**turn, "delivery_id": "<m2@x>", "reply": None},  # no reply: nothing owed
            {**turn, "channel": "sms"},  # owed to another channel
        )
        for other in others:
            assert core.post("/v1/turns?wait=true", json=other).status_code == 200
        assert core.get(owed_url, params={"channel": "email"}).status_code == 401  # a user key
        (owed,) = httpx.get(
            any_stack.core_url + owed_url, params={"channel": "email"}, headers=module
        ).json()
        assert owed == {
            "channel": "email",
            "delivery_id": "<m1@x>",
            "user_id": core.get("/v1/me").json()["id"],
            "chat_id": taken["chat_id"],
            "job_id": taken["job_id"],
            "user_message_id": taken["user_message_id"],
            "assistant_message_id": taken["assistant_message_id"],
            "model": taken["model"],
            "reply": REPLY,
            "created_at": owed["created_at"],
            "held_by": None,  # started without a holder: held a while all the same
            "held_until": owed["held_until"],
        }
        assert owed["held_until"] > owed["created_at"]
        assert core.post("/v1/turns", json=turn).json()["error"]["owed"] is True

        sent = {"channel": "email", "user_id": owed["user_id"], "delivery_id": "<m1@x>"}
        answered_url = any_stack.core_url + "/v1/deliveries/answered"
        assert core.post("/v1/deliveries/answered", json=sent).status_code == 401
        for _ in range(2):  # saying it twice is harmless
            assert httpx.post(answered_url, json=sent, headers=module).status_code == 204
        assert (
            httpx.get(
                any_stack.core_url + owed_url, params={"channel": "email"}, headers=module
            ).json()
            == []
        )
        assert core.post("/v1/turns", json=turn).json()["error"]["owed"] is False

        unknown = httpx.post(answered_url, json={**sent, "delivery_id": "<no@x>"}, headers=module)
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("turn", "says"),
    [
        pytest.param({"reply": REPLY}, "needs a `delivery_id`", id="reply-without-delivery"),
        pytest.param(
            {"reply": {"x": "y" * 20_000}, "delivery_id": "d1"}, "over 16000 bytes", id="too-big"
        ),
    ],
)
def test_a_reply_that_cannot_be_owed_is_a_400(
    any_stack: Stack, turn: dict[str, object], says: str
) -> None:
    with any_stack.admin() as core:
        refused = core.post("/v1/turns", json={"channel": "email", "text": "hi", **turn})
    assert refused.status_code == 400 and says in refused.json()["error"]["message"]
    assert any_stack.chats() == []


def test_one_channel_process_at_a_time_holds_an_owed_answer(any_stack: Stack) -> None:
    module = {MODULE_TOKEN_HEADER: module_token(any_stack.settings.installation_secret())}

    def hold(
        holder: str,
        lease_s: float = 60,
        renew: tuple[str, ...] = (),
        take: tuple[str, ...] = (),
        limit: int = 100,
    ) -> list[str]:
        def keys(ids: tuple[str, ...]) -> list[dict[str, str]]:
            return [{"user_id": user_id, "delivery_id": d} for d in ids]

        body = {
            "channel": "email",
            "holder": holder,
            "lease_s": lease_s,
            "renew": keys(renew),
            "take": keys(take),
            "limit": limit,
        }
        answer = httpx.post(
            f"{any_stack.core_url}/v1/deliveries/owed/hold", json=body, headers=module
        )
        assert answer.status_code == 200, answer.text
        return [owed["delivery_id"] for owed in answer.json()]

    with any_stack.admin() as core:
        user_id = core.get("/v1/me").json()["id"]
        for delivery, holder in (("<a@x>", "host-a/email"), ("<b@x>", None)):
            turn = {"channel": "email", "text": "hi", "delivery_id": delivery, "reply": REPLY}
            if holder:
                turn["reply_holder"] = holder
            assert core.post("/v1/turns?wait=true", json=turn).status_code == 200
        assert core.post("/v1/deliveries/owed/hold", json={}).status_code == 401  # a user key
    # A turn's holder has it; one started without a holder is held for a while all the same.
    assert hold("host-b/email") == []
    assert hold("host-a/email", lease_s=1) == ["<a@x>"]  # its own, after a restart say
    assert hold("host-b/email") == []
    assert hold("host-b/email", take=("<a@x>",), limit=0) == []  # a mail retried to host-b
    time.sleep(1.2)  # host-a went away: its lease ran out
    assert hold("host-b/email", lease_s=60) == ["<a@x>"]
    assert hold("host-a/email", renew=("<a@x>",)) == []  # no longer its to renew, or take
    owed = httpx.get(
        f"{any_stack.core_url}/v1/deliveries/owed", params={"channel": "email"}, headers=module
    ).json()
    assert {o["delivery_id"]: o["held_by"] for o in owed} == {
        "<a@x>": "host-b/email",
        "<b@x>": None,
    }
    # A mail retried to another process: it takes the answer by name only once it is free.
    assert hold("host-c/email", take=("<a@x>", "<b@x>", "<no@x>"), limit=0) == []
    assert hold("host-b/email", take=("<a@x>",), lease_s=1, limit=0) == ["<a@x>"]  # its own
    time.sleep(1.2)
    assert hold("host-c/email", take=("<a@x>",), limit=0) == ["<a@x>"]
    assert hold("host-b/email", take=("<a@x>",)) == []


async def test_a_delivery_names_the_turn_that_took_it_to_its_user_only(any_stack: Stack) -> None:
    """A channel process hands a message on before its turn exists (a call's redirect); the one
    the redirect reaches finds the turn by the delivery, once it is there."""
    delivery = "CA1 e2c6d0f4/&?x"  # anything a channel makes, as the query carries it
    turn = TurnCreate(channel="voice", thread="CA1", text="hi", delivery_id=delivery)
    other = any_stack.new_user("bob")
    async with (
        CoreClient(any_stack.core_url, api_key=any_stack.admin_key) as client,
        CoreClient(any_stack.core_url, api_key=other) as bob,
    ):
        assert await client.find_delivery("voice", delivery) is None  # not yet
        taken = await client.call_as(TurnRead, "POST", "/v1/turns", body=turn)
        found = await client.find_delivery("voice", delivery)
        assert found is not None
        assert found.model_dump() == {
            "channel": "voice",
            "delivery_id": delivery,
            "chat_id": taken.chat_id,
            "user_message_id": taken.user_message_id,
            "job_id": taken.job_id,
            "owed": False,
        }
        assert await client.find_delivery("sms", delivery) is None  # another channel's
        assert await bob.find_delivery("voice", delivery) is None  # another user's
    async with httpx.AsyncClient(base_url=any_stack.core_url) as raw:
        admin = {"Authorization": f"Bearer {any_stack.admin_key}"}
        url, query = "/v1/deliveries/turn", {"channel": "voice", "delivery_id": "x"}
        missing = await raw.get(url, params=query, headers=admin)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "delivery_not_found"
        assert (await raw.get(url, params={"channel": "voice"}, headers=admin)).status_code == 400
        assert (await raw.get(url, params=query)).status_code == 401


def test_a_regenerate_is_found_among_its_channels_regenerates(any_stack: Stack) -> None:
    """A page reloaded before it heard back from a regenerate finds the answer it started."""
    with any_stack.admin() as core:
        first = core.post("/v1/turns", json={"channel": "web", "text": "hi"}).json()
        again = core.post(
            f"/v1/messages/{first['user_message_id']}/regenerate",
            json={"channel": "web", "delivery_id": "R1"},
        )
        assert again.status_code == 202, again.text
        url = "/v1/deliveries/turn"
        found = core.get(url, params={"channel": "web:regenerate", "delivery_id": "R1"})
        assert found.status_code == 200, found.text
        assert found.json()["job_id"] == again.json()["job_id"]
        assert found.json()["user_message_id"] == first["user_message_id"]  # the question
        assert core.get(url, params={"channel": "web", "delivery_id": "R1"}).status_code == 404
        for channel in ("web:other", ":regenerate", "web:regenerate:regenerate"):
            wrong = core.get(url, params={"channel": channel, "delivery_id": "R1"})
            assert wrong.status_code == 400, channel
