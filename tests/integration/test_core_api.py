"""The core's own API: turns as SSE, resume with Last-Event-ID, waiting, auth and admin rights."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.stack import Stack, register_models, running_stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration


def sse(lines: list[str]) -> list[dict[str, Any]]:
    """Parse an SSE body into events with their id, type and data."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in [*lines, ""]:
        if not line:
            if current:
                events.append(current)
            current = {}
            continue
        field, _, value = line.partition(": ")
        current[field] = json.loads(value) if field == "data" else value
    return events


def auth(stack: Stack, key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key or stack.admin_key}"}


def test_turn_streams_numbered_events(stack: Stack, upstream: MockUpstream) -> None:
    headers = {**auth(stack), "Accept": "text/event-stream"}
    with httpx.stream(
        "POST", f"{stack.core_url}/v1/turns", json={"text": "hi"}, headers=headers
    ) as r:
        events = sse(list(r.iter_lines()))
        job_id = r.headers["x-patchbay-job-id"]
        user_message_id = r.headers["x-patchbay-user-message-id"]
    assert [e["event"] for e in events] == ["queued"] + ["running"] * 5 + ["done"]
    assert [int(e["id"]) for e in events] == list(range(1, 8))
    assert "".join(e["data"].get("delta", "") for e in events) == upstream.reply
    with httpx.Client(base_url=stack.core_url, headers=auth(stack)) as core:
        (chat,) = core.get("/v1/chats").json()
        first = core.get(f"/v1/chats/{chat['id']}/messages").json()[0]
    assert (first["id"], first["content"]) == (user_message_id, "hi")
    done = events[-1]["data"]
    assert done["job_id"] == job_id and done["content"] == upstream.reply
    assert done["usage"] == {"input_tokens": 7, "output_tokens": 5}


def test_resume_after_the_job_ended_replays_each_later_event_once(stack: Stack) -> None:
    result = httpx.post(
        f"{stack.core_url}/v1/turns?wait=true", json={"text": "hi"}, headers=auth(stack)
    ).json()
    job_id = result["turn"]["job_id"]
    assert result["outcome"]["type"] == "done"
    for last_seen in (0, 3, 6):
        with httpx.stream(
            "GET",
            f"{stack.core_url}/v1/jobs/{job_id}/events",
            headers={**auth(stack), "Last-Event-ID": str(last_seen)},
        ) as r:
            ids = [int(e["id"]) for e in sse(list(r.iter_lines()))]
        assert ids == list(range(last_seen + 1, 8))


def test_resume_while_the_job_runs(stack: Stack, upstream: MockUpstream) -> None:
    upstream.mode, upstream.delay_s = "slow", 0.5
    created = httpx.post(f"{stack.core_url}/v1/turns", json={"text": "hi"}, headers=auth(stack))
    assert created.status_code == 202
    job_id = created.json()["job_id"]
    with httpx.stream(
        "GET", f"{stack.core_url}/v1/jobs/{job_id}/events?after=1", headers=auth(stack)
    ) as r:
        events = sse(list(r.iter_lines()))
    assert [int(e["id"]) for e in events] == list(range(2, 8))
    assert events[-1]["event"] == "done"


def test_resume_from_the_store_once_events_are_gone(tmp_path: Path, upstream: MockUpstream) -> None:
    settings = make_settings(tmp_path, jobs={"event_retention_s": 0})
    with running_stack(settings) as stack:
        register_models(stack, upstream.base_url)
        result = httpx.post(
            f"{stack.core_url}/v1/turns?wait=true", json={"text": "hi"}, headers=auth(stack)
        ).json()
        url = f"{stack.core_url}/v1/jobs/{result['turn']['job_id']}/events"
        # A listener that had some tokens: start again, the whole answer as one token, the end.
        with httpx.stream("GET", url, headers={**auth(stack), "Last-Event-ID": "3"}) as r:
            restarted, token, event = sse(list(r.iter_lines()))
        with httpx.stream("GET", url, headers={**auth(stack), "Last-Event-ID": "6"}) as r:
            (only_the_end,) = sse(list(r.iter_lines()))
        with httpx.stream("GET", url, headers={**auth(stack), "Last-Event-ID": "7"}) as r:
            assert sse(list(r.iter_lines())) == []
    assert (restarted["id"], restarted["event"]) == ("4", "restarted")
    assert (token["id"], token["event"]) == ("6", "running")
    assert token["data"]["delta"] == result["outcome"]["content"]
    assert (event["id"], event["event"]) == ("7", "done") and only_the_end == event
    assert event["data"]["content"] == result["outcome"]["content"]


def test_jobs_of_other_users_are_not_found(stack: Stack) -> None:
    result = httpx.post(
        f"{stack.core_url}/v1/turns?wait=true", json={"text": "hi"}, headers=auth(stack)
    ).json()
    job_id = result["turn"]["job_id"]
    stranger = stack.new_user("stranger")
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/events"):
        response = httpx.get(stack.core_url + path, headers=auth(stack, stranger))
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "job_not_found"


def test_admin_routes_need_an_admin(stack: Stack) -> None:
    key = stack.new_user("plain")
    for method, path, body in (
        ("POST", "/v1/users", {"name": "sneaky"}),
        ("GET", "/v1/providers", None),
        ("POST", "/v1/models", {"name": "m", "provider": "mock"}),
    ):
        response = httpx.request(method, stack.core_url + path, headers=auth(stack, key), json=body)
        assert response.status_code == 403, path
    users = httpx.get(stack.core_url + "/v1/users", headers=auth(stack, key)).json()
    assert [u["name"] for u in users] == ["plain"]
    assert httpx.get(stack.core_url + "/v1/models", headers=auth(stack, key)).status_code == 200
    assert httpx.get(stack.core_url + "/v1/me", headers=auth(stack, key)).json()["name"] == "plain"


def test_everything_but_health_needs_a_key(stack: Stack) -> None:
    assert httpx.get(stack.core_url + "/healthz").status_code == 200
    for path in ("/v1/chats", "/v1/models", "/v1/me"):
        response = httpx.get(stack.core_url + path)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_bad_turns_get_clear_errors(stack: Stack) -> None:
    cases = [
        ({"text": 5}, 400, "invalid_request"),
        ({"text": "hi", "model": "ghost"}, 404, "model_not_found"),
        ({"text": "hi", "chat_id": "01ABC"}, 404, "chat_not_found"),
        ({"text": "hi", "options": {"temperature": 9}}, 400, "invalid_request"),
    ]
    for body, status, code in cases:
        response = httpx.post(f"{stack.core_url}/v1/turns", json=body, headers=auth(stack))
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), body
    not_json = httpx.post(f"{stack.core_url}/v1/turns", content=b"{text", headers=auth(stack))
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "invalid_request"
    no_key = httpx.post(f"{stack.core_url}/v1/turns", json={"text": "hi"})
    assert (no_key.status_code, no_key.json()["error"]["code"]) == (401, "invalid_api_key")
    not_a_flag = httpx.post(
        f"{stack.core_url}/v1/turns?wait=maybe", json={"text": "hi"}, headers=auth(stack)
    )
    assert (not_a_flag.status_code, not_a_flag.json()["error"]["code"]) == (400, "invalid_request")
    assert "query.wait" in not_a_flag.json()["error"]["message"]
    waited = httpx.post(
        f"{stack.core_url}/v1/turns?wait=1", json={"text": "hi"}, headers=auth(stack), timeout=30
    )
    assert (waited.status_code, waited.json()["outcome"]["type"]) == (200, "done")


def test_chats_can_be_renamed_and_deleted(stack: Stack) -> None:
    result = httpx.post(
        f"{stack.core_url}/v1/turns?wait=true", json={"text": "hi"}, headers=auth(stack)
    ).json()
    chat_id = result["turn"]["chat_id"]
    with stack.admin() as core:
        assert (
            core.patch(f"/v1/chats/{chat_id}", json={"title": "Renamed"}).json()["title"]
            == "Renamed"
        )
        assert core.delete(f"/v1/chats/{chat_id}").status_code == 204
        assert core.get(f"/v1/chats/{chat_id}").status_code == 404
        assert core.get("/v1/chats").json() == []


def test_a_growing_answer_is_checkpointed(tmp_path: Path, upstream: MockUpstream) -> None:
    upstream.mode, upstream.delay_s = "drip", 0.3
    upstream.reply = "one two three four five six"
    settings = make_settings(tmp_path, jobs={"checkpoint_interval_s": 0.1})
    with running_stack(settings) as stack:
        register_models(stack, upstream.base_url)
        created = httpx.post(
            f"{stack.core_url}/v1/turns", json={"text": "count"}, headers=auth(stack)
        )
        chat_id = created.json()["chat_id"]
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            answer = httpx.get(
                f"{stack.core_url}/v1/chats/{chat_id}/messages", headers=auth(stack)
            ).json()[-1]
            seen.append((answer["status"], answer["content"]))
            if answer["status"] == "complete":
                break
            time.sleep(0.05)
    partial = [content for status, content in seen if status == "streaming"]
    assert partial, seen
    assert all(upstream.reply.startswith(content) for content in partial)
    assert len(set(partial)) >= 2  # it grew while we watched
    assert seen[-1] == ("complete", upstream.reply)
    with running_stack(settings) as stack:
        job = httpx.get(f"{stack.core_url}/v1/jobs/{created.json()['job_id']}", headers=auth(stack))
    assert job.json()["status"] == "done"


def test_keys_and_users_through_the_api(stack: Stack) -> None:
    with stack.admin() as admin:
        user = admin.post("/v1/users", json={"name": "dora"}).json()
        assert admin.post("/v1/users", json={"name": "dora"}).status_code == 409
        issued = admin.post(f"/v1/users/{user['id']}/keys", json={"name": "phone"}).json()
        assert (
            admin.patch(f"/v1/users/{user['id']}", json={"name": "dorothy"}).json()["name"]
            == "dorothy"
        )
        assert admin.get(f"/v1/users/{user['id']}").json()["name"] == "dorothy"
        everyone = admin.get("/v1/keys?all_users=true").json()
        assert {k["user_id"] for k in everyone} == {user["id"], admin.get("/v1/me").json()["id"]}
        assert all("key" not in k and "key_hash" not in k for k in everyone)
    own = httpx.get(
        f"{stack.core_url}/v1/keys?all_users=true", headers=auth(stack, issued["key"])
    ).json()
    assert [k["id"] for k in own] == [issued["id"]]
    revoked = httpx.delete(
        f"{stack.core_url}/v1/keys/{issued['id']}", headers=auth(stack, issued["key"])
    )
    assert revoked.status_code == 204
    assert (
        httpx.get(f"{stack.core_url}/v1/me", headers=auth(stack, issued["key"])).status_code == 401
    )
    with stack.admin() as admin:
        assert admin.delete(f"/v1/users/{user['id']}").status_code == 204
        assert admin.get(f"/v1/users/{user['id']}").status_code == 404


def test_providers_and_models_through_the_api(stack: Stack, upstream: MockUpstream) -> None:
    with stack.admin() as admin:
        bad = admin.post("/v1/providers", json={"name": "x", "kind": "openai"})
        assert bad.status_code == 400 and "api_base" in bad.json()["error"]["message"]
        admin.post(
            "/v1/providers",
            json={
                "name": "envkey",
                "kind": "openai",
                "api_base": upstream.base_url,
                "api_key_env": "PB_TEST_KEY",
            },
        ).raise_for_status()
        listed = {p["name"]: p for p in admin.get("/v1/providers").json()}
        assert listed["mock"]["has_api_key"] and "api_key" not in listed["mock"]
        assert listed["envkey"]["api_key_env"] == "PB_TEST_KEY"
        moved = admin.patch("/v1/providers/envkey", json={"api_base": upstream.base_url + "/"})
        assert moved.json()["api_base"].endswith("/")
        admin.post("/v1/models", json={"name": "via-env", "provider": "envkey"}).raise_for_status()
        made_default = admin.patch("/v1/models/via-env", json={"is_default": True}).json()
        assert made_default["is_default"]
        assert (
            admin.post("/v1/turns?wait=true", json={"text": "hi"}).json()["outcome"]["model"]
            == "via-env"
        )
        assert admin.delete("/v1/models/via-env").status_code == 204
        assert admin.delete("/v1/providers/envkey").status_code == 204
        assert admin.delete("/v1/providers/envkey").status_code == 404
        assert (
            admin.post("/v1/models", json={"name": "orphan", "provider": "gone"}).status_code == 404
        )
