"""A turn sent while its chat's answer is still coming, with `queue_behind`: stored at once, and
answered once that answer has ended, with it in its history."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.databases import postgres_database
from tests.support.stack import Stack, register_models, running_stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, upstream: MockUpstream
) -> Iterator[Stack]:
    with contextlib.ExitStack() as stacked:
        overrides: dict[str, object] = {}
        if request.param == "postgresql":
            overrides["database_url"] = stacked.enter_context(postgres_database())
        running = stacked.enter_context(running_stack(make_settings(tmp_path, **overrides)))
        register_models(running, upstream.base_url)
        yield running


def auth(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.admin_key}"}


def send(stack: Stack, text: str, **extra: object) -> dict[str, Any]:
    body = {"text": text, "channel": "test", "thread": "t1", "stream": False, **extra}
    started = httpx.post(f"{stack.core_url}/v1/turns", json=body, headers=auth(stack), timeout=30)
    assert started.status_code in (200, 201, 202), started.text
    return dict(started.json())


def job(stack: Stack, job_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{stack.core_url}/v1/jobs/{job_id}", headers=auth(stack)).json())


def wait_ended(stack: Stack, job_id: str, timeout_s: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while (found := job(stack, job_id))["status"] not in ("done", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"job {job_id} still {found['status']}"
        time.sleep(0.05)
    return found


def one_behind_another(
    stack: Stack, upstream: MockUpstream, *, delay_s: float = 1.0
) -> tuple[dict[str, Any], ...]:
    """A turn whose answer takes `delay_s`, and one sent behind it meanwhile, with options."""
    upstream.mode, upstream.delay_s = "slow", delay_s
    options = {"temperature": 0.3, "max_tokens": 7}
    return send(stack, "one"), send(stack, "two", queue_behind=True, options=options)


def messages(stack: Stack, chat_id: str) -> list[dict[str, Any]]:
    url = f"{stack.core_url}/v1/chats/{chat_id}/messages"
    return list(httpx.get(url, headers=auth(stack)).json())


def test_a_turn_behind_a_running_answer_is_stored_at_once_and_answered_after_it(
    stack: Stack, upstream: MockUpstream
) -> None:
    first, second = one_behind_another(stack, upstream)
    assert second["chat_id"] == first["chat_id"]
    assert job(stack, second["job_id"])["status"] == "waiting"
    stored = [(m["role"], m["content"]) for m in messages(stack, first["chat_id"])]
    assert stored[-2] == ("user", "two")  # kept by the core now, not by whoever sent it
    assert wait_ended(stack, second["job_id"])["status"] == "done"
    assert job(stack, first["job_id"])["status"] == "done"
    assert len(upstream.requests) == 2
    asked = [(m["role"], m["content"]) for m in upstream.requests[1]["messages"]]
    assert asked[-3:] == [("user", "one"), ("assistant", upstream.reply), ("user", "two")]
    assert (upstream.requests[1]["temperature"], upstream.requests[1]["max_tokens"]) == (0.3, 7)
    assert "temperature" not in upstream.requests[0]
    branch = [(m["role"], m["content"]) for m in messages(stack, first["chat_id"])]
    assert branch == [
        ("user", "one"),
        ("assistant", upstream.reply),
        ("user", "two"),
        ("assistant", upstream.reply),
    ]


def test_a_waiting_turn_cancelled_never_runs(stack: Stack, upstream: MockUpstream) -> None:
    first, second = one_behind_another(stack, upstream)
    cancelled = httpx.delete(f"{stack.core_url}/v1/jobs/{second['job_id']}", headers=auth(stack))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert wait_ended(stack, first["job_id"])["status"] == "done"
    time.sleep(0.5)  # when the second would have been queued
    assert job(stack, second["job_id"])["status"] == "cancelled"
    assert len(upstream.requests) == 1


def test_behind_nothing_a_turn_runs_at_once(stack: Stack, upstream: MockUpstream) -> None:
    first = send(stack, "one", queue_behind=True)
    assert job(stack, first["job_id"])["status"] != "waiting"
    assert wait_ended(stack, first["job_id"])["status"] == "done"


def test_an_answer_ahead_that_is_cancelled_lets_the_turn_behind_run(
    stack: Stack, upstream: MockUpstream
) -> None:
    first, second = one_behind_another(stack, upstream)
    httpx.delete(f"{stack.core_url}/v1/jobs/{first['job_id']}", headers=auth(stack))
    assert wait_ended(stack, first["job_id"])["status"] == "cancelled"
    assert wait_ended(stack, second["job_id"])["status"] == "done"
    asked = [(m["role"], m["content"]) for m in upstream.requests[-1]["messages"]]
    assert asked[-2:] == [("user", "one"), ("user", "two")]  # nothing was answered to "one"


def test_a_turn_behind_a_waiting_turn_cancelled_still_waits_for_the_answer_before_it(
    stack: Stack, upstream: MockUpstream
) -> None:
    # Time for three turns, a cancel and a look on a loaded machine while "one" is answered
    first, second = one_behind_another(stack, upstream, delay_s=3.0)
    third = send(stack, "three", queue_behind=True)
    assert job(stack, third["job_id"])["status"] == "waiting"
    httpx.delete(f"{stack.core_url}/v1/jobs/{second['job_id']}", headers=auth(stack))
    time.sleep(0.3)
    assert job(stack, first["job_id"])["status"] == "running"
    assert job(stack, third["job_id"])["status"] == "waiting"  # "one" is still being answered
    assert wait_ended(stack, third["job_id"])["status"] == "done"
    assert job(stack, first["job_id"])["status"] == "done"
    assert len(upstream.requests) == 2
    asked = [(m["role"], m["content"]) for m in upstream.requests[-1]["messages"]]
    assert asked[-4:] == [
        ("user", "one"),
        ("assistant", upstream.reply),
        ("user", "two"),
        ("user", "three"),
    ]


def test_a_listener_of_a_turn_waiting_when_its_chat_is_deleted_hears_it_end(
    stack: Stack, upstream: MockUpstream
) -> None:
    first, second = one_behind_another(stack, upstream, delay_s=3.0)  # deleted before it ends
    heard: list[str] = []

    def listen() -> None:
        url = f"{stack.core_url}/v1/jobs/{second['job_id']}/events"
        with httpx.stream("GET", url, headers=auth(stack), timeout=30) as got:
            heard.extend(line for line in got.iter_lines() if line.startswith("event: "))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(0.2)
    deleted = httpx.delete(f"{stack.core_url}/v1/chats/{first['chat_id']}", headers=auth(stack))
    assert deleted.status_code == 204, deleted.text
    listener.join(timeout=10)  # it waited for ever: the turn it followed was gone
    assert not listener.is_alive(), heard
    assert heard[-1] == "event: failed"
