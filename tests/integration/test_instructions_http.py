"""Seed 003's instruction set over HTTP (`POST /v1/instructions`), on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from patchbay.schemas.instructions import OWED_HEADER
from patchbay.schemas.senders import MODULE_TOKEN_HEADER
from patchbay.tokens import module_token
from tests.conftest import make_settings
from tests.support.databases import postgres_database
from tests.support.stack import Stack, running_stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration

LLAMA = "meta-llama/Meta-Llama-3-8B-Instruct"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    if request.param == "sqlite":
        with running_stack(make_settings(tmp_path)) as stack:
            yield stack
        return
    with (
        postgres_database() as url,
        running_stack(make_settings(tmp_path, database_url=url)) as stack,
    ):
        yield stack


def send(client: httpx.Client, kind: str, **data: Any) -> tuple[int, dict[str, Any]]:
    response = client.post("/v1/instructions", json={"type": kind, "data": data})
    body = response.json()
    assert body["status"] in {"success", "error"}, body
    return response.status_code, body


def ok(client: httpx.Client, kind: str, **data: Any) -> dict[str, Any]:
    status, body = send(client, kind, **data)
    assert (status, body["status"], body["type"]) == (200, "success", kind), body
    return dict(body["data"])


def failed(client: httpx.Client, kind: str, code: str, **data: Any) -> dict[str, Any]:
    status, body = send(client, kind, **data)
    assert body["status"] == "error" and body["error"]["code"] == code, body
    assert status >= 400 and body["error"]["message"]
    return dict(body)


def test_the_whole_instruction_set(any_stack: Stack, upstream: MockUpstream) -> None:
    with any_stack.admin() as admin:
        john = ok(admin, "USER_CREATE", username="john_doe", profile="Sample profile")["user"]
        assert (john["number"], john["profile"]) == (2, "Sample profile")
        failed(admin, "USER_CREATE", "user_exists", username="john_doe")
        updated = ok(admin, "USER_UPDATE", user_id=2, profile={"team": "blue"})["user"]
        assert updated["profile"] == {"team": "blue"}
        users = ok(admin, "USER_LIST")["users"]
        assert [u["name"] for u in users] == ["admin", "john_doe"]

        chat = ok(admin, "CHAT_CREATE", title="Sample Chat", usernames=["john_doe"])["chat"]
        assert (chat["number"], chat["members"]) == (1, [john["id"]])
        assert ok(admin, "CHAT_UPDATE", chat_id=1, title="Renamed")["chat"]["title"] == "Renamed"
        assert [c["id"] for c in ok(admin, "CHAT_LIST")["chats"]] == [chat["id"]]

        endpoint = f"{upstream.base_url}/chat/completions"
        added = ok(
            admin, "LLM_PROVIDER_ADD", name="vLLM", api_endpoint=endpoint, api_key="sk-secret"
        )
        assert added["provider"]["api_base"] == upstream.base_url
        assert added["provider"]["has_api_key"] and "sk-secret" not in str(added)
        ok(admin, "LLM_PROVIDER_UPDATE", name="vLLM", options={"timeout": 30})
        providers = ok(admin, "LLM_PROVIDER_LIST")["providers"]
        assert "vLLM" in [p["name"] for p in providers] and "sk-secret" not in str(providers)
        llm = ok(admin, "LLM_ADD", provider_name="vLLM", llm_name=LLAMA)["llm"]
        assert (llm["name"], llm["provider"]) == (LLAMA, "vLLM")
        assert ok(admin, "LLM_UPDATE", llm_name=LLAMA, is_default=True)["llm"]["is_default"]
        assert [m["name"] for m in ok(admin, "LLM_LIST", provider_name="vLLM")["llms"]] == [LLAMA]

        answer = ok(
            admin,
            "LLM_RESPONSE_GENERATE",
            user_id=1,
            chat_id=1,
            provider_name="vLLM",
            llm_name=LLAMA,
            user_input="Who won the world series in 2020?",
        )
        assert answer["llm_response"] == upstream.reply
        assert (answer["user_message"]["number"], answer["assistant_message"]["number"]) == (1, 2)
        again = ok(admin, "LLM_RESPONSE_REGENERATE", message_id=2)
        assert again["llm_response"] == upstream.reply
        assert again["user_message"]["id"] == answer["user_message"]["id"]
        loaded = ok(admin, "CHAT_LOAD", chat_id=1)
        _question, reply = loaded["messages"]
        assert reply["id"] == again["assistant_message"]["id"]
        assert reply["sibling_ids"] == [
            answer["assistant_message"]["id"],
            again["assistant_message"]["id"],
        ]
        ok(admin, "CHAT_UPDATE", chat_id=1, current_message_id=2)
        assert ok(admin, "CHAT_LOAD", chat_id=1)["messages"][-1]["number"] == 2

        ok(admin, "LLM_DELETE", llm_name=LLAMA)
        ok(admin, "LLM_PROVIDER_DELETE", name="vLLM")
        assert ok(admin, "LLM_LIST", provider_name="vLLM")["llms"] == []
        ok(admin, "CHAT_DELETE", chat_id=1)
        failed(admin, "CHAT_LOAD", "chat_not_found", chat_id=1)
        ok(admin, "USER_DELETE", user_id=2)
        assert [u["name"] for u in ok(admin, "USER_LIST")["users"]] == ["admin"]


def test_recording_stores_each_instruction_without_secrets(stack: Stack) -> None:
    with stack.admin() as admin:
        assert ok(admin, "USER_INSTRUCTION_RECORDING_ENABLE")["user"]["instruction_recording"]
        ok(admin, "USER_LIST")
        failed(admin, "CHAT_LOAD", "chat_not_found", chat_id=404)
        ok(admin, "LLM_PROVIDER_ADD", name="paid", api_base="http://127.0.0.1:9/v1", api_key="sk-x")
        records = ok(admin, "USER_INSTRUCTION_RECORDING_LIST")["records"]
        assert [(r["type"], r["status"], r["error_code"]) for r in records] == [
            ("LLM_PROVIDER_ADD", "success", None),
            ("CHAT_LOAD", "error", "chat_not_found"),
            ("USER_LIST", "success", None),
        ]
        assert records[0]["payload"]["api_key"] == "***" and "sk-x" not in str(records)
        assert all(r["latency_ms"] >= 0 and r["transport"] == "http" for r in records)
        ok(admin, "USER_INSTRUCTION_RECORDING_DISABLE")
        ok(admin, "USER_LIST")
        # the first listing and the switch-off were recorded too; what came after was not
        kinds = [r["type"] for r in ok(admin, "USER_INSTRUCTION_RECORDS_LIST")["records"]]
        assert kinds[:2] == [
            "USER_INSTRUCTION_RECORDING_DISABLE",
            "USER_INSTRUCTION_RECORDING_LIST",
        ]
        assert ok(admin, "USER_INSTRUCTION_RECORDS_DELETE")["deleted"] == 5
        assert ok(admin, "USER_INSTRUCTION_RECORDING_LIST")["records"] == []


def test_bad_instructions_get_specific_errors_and_change_nothing(stack: Stack) -> None:
    john_key = stack.new_user("john")
    with stack.admin() as admin, httpx.Client(base_url=stack.core_url) as anonymous:
        raw = admin.post("/v1/instructions", content=b"{not json")
        assert (raw.status_code, raw.json()["error"]["code"]) == (400, "invalid_json")
        failed(admin, "USER_FLY", "unknown_instruction")
        missing = failed(admin, "USER_CREATE", "invalid_instruction")
        assert "username" in missing["error"]["message"]
        failed(admin, "CHAT_LOAD", "invalid_instruction", chat_id=[1])
        failed(admin, "USER_LIST", "invalid_instruction", surprise=True)
        not_object = admin.post("/v1/instructions", json="USER_LIST")
        assert not_object.json()["error"]["code"] == "invalid_instruction"
        failed(admin, "USER_DELETE", "user_not_found", user_id=999)
        failed(admin, "LLM_RESPONSE_REGENERATE", "message_not_found", message_id=999)
        failed(admin, "LLM_ADD", "provider_not_found", provider_name="nope", llm_name="x")
        private = ok(admin, "CHAT_CREATE", title="admins only")["chat"]

        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = anonymous.post(
                "/v1/instructions",
                json={"type": "USER_CREATE", "data": {"username": "mallory"}},
                headers=headers,
            )
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "invalid_api_key"
        anonymous.headers["Authorization"] = f"Bearer {john_key}"
        failed(anonymous, "USER_CREATE", "permission_denied", username="mallory")
        failed(anonymous, "CHAT_LOAD", "chat_not_found", chat_id=private["id"])
        # users who are not admins cannot even see the others
        failed(anonymous, "LLM_RESPONSE_GENERATE", "user_not_found", user_id=1, user_input="x")
        failed(anonymous, "USER_UPDATE", "permission_denied", user_id=2, role="admin")
        assert [u["name"] for u in ok(anonymous, "USER_LIST")["users"]] == ["john"]
        assert [u["name"] for u in ok(admin, "USER_LIST")["users"]] == ["admin", "john"]


def test_a_batch_runs_in_order_and_answers_each(stack: Stack) -> None:
    batch = [
        {"type": "USER_CREATE", "data": {"username": "ann"}, "id": "a"},
        {"type": "CHAT_CREATE", "data": {"usernames": ["nobody"]}, "id": "b"},
        {"type": "CHAT_CREATE", "data": {"title": "t", "usernames": ["ann"]}, "id": "c"},
    ]
    with stack.admin() as admin:
        response = admin.post("/v1/instructions", json=batch)
        assert response.status_code == 200
        results = response.json()
        too_many = admin.post("/v1/instructions", json=[batch[0]] * 101)
    assert [(r["id"], r["status"]) for r in results] == [
        ("a", "success"),
        ("b", "error"),
        ("c", "success"),
    ]
    assert results[1]["error"]["code"] == "user_not_found"
    assert too_many.status_code == 400


def test_rest_resources_share_the_code_path(stack: Stack) -> None:
    with stack.admin() as admin:
        admin.post("/v1/users", json={"name": "bea"}).raise_for_status()
        chat = admin.post("/v1/chats", json={"title": "rest", "members": ["bea"]}).json()
        assert chat["members"] and chat["number"] == 1
        result = admin.post(
            "/v1/turns?wait=true", json={"text": "hi", "chat_id": chat["id"]}
        ).json()
        answer_id = result["turn"]["assistant_message_id"]
        again = admin.post(f"/v1/messages/{answer_id}/regenerate?wait=true", json={}).json()
        assert again["outcome"]["type"] == "done"
        messages = admin.get(f"/v1/chats/{chat['number']}/messages").json()
        assert messages[-1]["sibling_ids"] == [answer_id, again["turn"]["assistant_message_id"]]
        admin.patch("/v1/users/2", json={"instruction_recording": True}).raise_for_status()
        assert admin.get("/v1/users/2/instruction-records").json() == []


def test_only_a_module_may_have_a_generate_answered_later(stack: Stack) -> None:
    reply = {"reply_to": "q", "correlation_id": "c"}
    ask = {"delivery_id": "amqp:1", "reply": reply, "holder": "h"}
    body = {"type": "LLM_RESPONSE_GENERATE", "id": "mine", "data": {"user_input": "hi"}}
    token = module_token(stack.settings.installation_secret())
    with stack.admin() as admin:
        refused = admin.post("/v1/instructions", json=body, headers={OWED_HEADER: json.dumps(ask)})
        started = admin.post(
            "/v1/instructions",
            json=body,
            headers={OWED_HEADER: json.dumps(ask), MODULE_TOKEN_HEADER: token},
        )
        listed = admin.post(
            "/v1/instructions",
            json={"type": "LLM_LIST"},
            headers={OWED_HEADER: json.dumps(ask), MODULE_TOKEN_HEADER: token},
        )
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert started.status_code == 202, started.text
    owed = started.json()
    assert (owed["type"], owed["id"]) == ("LLM_RESPONSE_GENERATE", "mine")
    instruction = {
        "type": "LLM_RESPONSE_GENERATE",
        "id": "mine",
        "user_id": owed["data"]["user_id"],
    }
    assert owed["data"]["reply"] == {**reply, "instruction": instruction}
    assert listed.status_code == 200  # answered at once, as ever
