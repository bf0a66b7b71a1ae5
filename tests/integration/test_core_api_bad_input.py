"""The core API against hostile or malformed input: other users' ids and names, odd headers,
numbers past 64 bits, nulls, NUL characters. Each gets a 4xx in the API's shape that says no more
than a missing id would; never a 500, never another user's data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from patchbay.schemas.helpers import HELPER_KEY_HEADER
from patchbay.tokens import helper_key
from tests.conftest import make_settings
from tests.support.databases import postgres_database
from tests.support.hand_helper import HandHelper, running_helper
from tests.support.stack import Stack, register_models, running_stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration

UNKNOWN_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


def key(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def core(stack: Stack) -> Iterator[httpx.Client]:
    # No keep-alive: a server that failed a request may drop its connection.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=stack.core_url, timeout=30, limits=limits) as client:
        yield client


def test_regenerating_another_users_message_is_as_for_a_missing_one(
    stack: Stack, core: httpx.Client
) -> None:
    alice, bob = stack.new_user("alice"), stack.new_user("bob")
    turn = core.post("/v1/turns?wait=true", json={"text": "secret"}, headers=key(alice))
    theirs = turn.json()["turn"]
    answers = [
        core.post(f"/v1/messages/{ref}/regenerate", json={}, headers=key(bob))
        for ref in (UNKNOWN_ID, theirs["user_message_id"], "1")
    ]
    instruction = {"type": "LLM_RESPONSE_REGENERATE", "data": {"message_id": 1}}
    answers.append(core.post("/v1/instructions", json=instruction, headers=key(bob)))
    assert [a.status_code for a in answers] == [404, 404, 404, 404]
    assert {a.json()["error"]["code"] for a in answers} == {"message_not_found"}
    assert not any(theirs["chat_id"] in a.text for a in answers)


@pytest.fixture
def helper() -> Iterator[HandHelper]:
    with running_helper() as hand:
        yield hand


def test_a_helper_limited_to_a_user_goes_by_their_id_not_their_name(
    stack: Stack, core: httpx.Client, helper: HandHelper
) -> None:
    registration = {HELPER_KEY_HEADER: helper_key(stack.settings.installation_secret())}
    assert core.post("/v1/helpers", json=helper.manifest(), headers=registration).status_code == 201
    carol, bob = stack.new_user("carol"), stack.new_user("bob")
    carol_id = core.get("/v1/me", headers=key(carol)).json()["id"]
    bob_id = core.get("/v1/me", headers=key(bob)).json()["id"]
    limited = core.patch(
        "/v1/helpers/calc", json={"allowed_users": ["carol"]}, headers=key(stack.admin_key)
    )
    assert limited.json()["allowed_users"] == [carol_id]  # her name, kept as her id
    call = "/v1/helpers/calc/capabilities/add"

    def adds(token: str) -> bool:
        return core.post(call, json={"a": 1, "b": 2}, headers=key(token)).status_code == 200

    assert (adds(carol), adds(bob)) == (True, False)
    core.patch(f"/v1/users/{carol_id}", json={"name": "carol2"}, headers=key(carol))
    core.patch(f"/v1/users/{bob_id}", json={"name": "carol"}, headers=key(bob))
    assert (adds(carol), adds(bob)) == (True, False)  # bob has her name now, not her rights
    core.patch(f"/v1/users/{bob_id}", json={"name": carol_id}, headers=key(bob))
    assert not adds(bob)  # nor by taking her id as his name


@pytest.mark.parametrize("header", [b"\xb2", b"9" * 5000])
def test_a_last_event_id_that_is_no_number_is_ignored(
    stack: Stack, core: httpx.Client, header: bytes
) -> None:
    alice = stack.new_user("alice")
    job = core.post("/v1/turns?wait=true", json={"text": "hi"}, headers=key(alice))
    job_id = job.json()["turn"]["job_id"]
    headers = [(b"Authorization", f"Bearer {alice}".encode()), (b"Last-Event-ID", header)]
    events = core.get(f"/v1/jobs/{job_id}/events", headers=headers)
    assert events.status_code == 200
    assert "event: done" in events.text  # from the start


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/v1/me", {"X-Patchbay-As-User": "1", "X-Patchbay-Module-Token": b"\xe9t\xe9"}),
        ("GET", "/v1/deliveries/owed?channel=sms", {"X-Patchbay-Module-Token": b"\xe9t\xe9"}),
        ("POST", "/v1/helpers/calc/heartbeat", {"X-Patchbay-Helper-Key": b"\xe9t\xe9"}),
    ],
)
def test_a_token_with_bytes_past_ascii_is_refused(
    core: httpx.Client, method: str, path: str, headers: dict[str, Any]
) -> None:
    assert core.request(method, path, headers=headers, json={}).status_code == 401


@pytest.mark.parametrize("field", ["profile", "name", "instruction_recording"])
def test_a_user_field_cannot_be_set_to_null(stack: Stack, core: httpx.Client, field: str) -> None:
    bob = stack.new_user("bob")
    me = core.get("/v1/me", headers=key(bob)).json()
    patched = core.patch(f"/v1/users/{me['id']}", json={field: None}, headers=key(bob))
    instruction = {"type": "USER_UPDATE", "data": {"user_id": me["id"], field: None}}
    told = core.post("/v1/instructions", json=instruction, headers=key(bob))
    assert (patched.status_code, told.status_code) == (400, 400)
    assert core.get("/v1/me", headers=key(bob)).json() == me


@pytest.mark.parametrize(
    "item",
    [
        {"type": "CHAT_LOAD", "data": {"chat_id": 2**63}},
        {"type": "LLM_RESPONSE_REGENERATE", "data": {"message_id": 2**63}},
    ],
)
def test_a_number_past_64_bits_names_nothing(
    stack: Stack, core: httpx.Client, item: dict[str, Any]
) -> None:
    alice = stack.new_user("alice")
    assert core.post("/v1/instructions", json=item, headers=key(alice)).status_code == 404


def test_an_unknown_member_is_refused_when_a_chat_changes_as_when_it_is_made(
    stack: Stack, core: httpx.Client
) -> None:
    alice = stack.new_user("alice")
    stack.new_user("bob")
    made = core.post("/v1/chats", json={"members": ["nobody"]}, headers=key(alice))
    chat = core.post("/v1/chats", json={"title": "t"}, headers=key(alice)).json()
    changed = core.patch(
        f"/v1/chats/{chat['id']}", json={"members": ["bob", "nobody"]}, headers=key(alice)
    )
    assert (made.status_code, changed.status_code) == (404, 404)
    assert core.get(f"/v1/chats/{chat['id']}", headers=key(alice)).json()["members"] == []


def test_a_malformed_upload_gets_the_apis_error_shape(stack: Stack, core: httpx.Client) -> None:
    alice = stack.new_user("alice")
    multipart = {**key(alice), "content-type": "multipart/form-data; boundary=xx"}
    sent = core.post("/v1/turns/upload", content=b"garbage", headers=multipart)
    assert sent.status_code == 400
    assert sent.json()["error"]["code"] == "invalid_request"


@pytest.fixture
def pg_stack(tmp_path: Path, upstream: MockUpstream) -> Iterator[Stack]:
    with postgres_database() as url:
        settings = make_settings(tmp_path, database_url=url)
        with running_stack(settings) as running:
            register_models(running, upstream.base_url)
            yield running


def test_a_nul_character_on_postgresql_is_a_400_or_a_404(pg_stack: Stack) -> None:
    """PostgreSQL refuses to hold NUL in text (SQLite takes it): a bad request, not a 500."""
    alice = pg_stack.new_user("alice")
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=pg_stack.core_url, timeout=30, limits=limits) as core:
        asked = [
            core.get("/v1/chats/%00", headers=key(alice)),
            core.get("/v1/jobs/%00", headers=key(alice)),
            core.post("/v1/turns", json={"text": "a\u0000b"}, headers=key(alice)),
            core.post("/v1/chats", json={"title": "a\u0000"}, headers=key(alice)),
        ]
    assert [answer.status_code for answer in asked] == [400, 400, 400, 400]
    assert {answer.json()["error"]["code"] for answer in asked} == {"invalid_request"}
