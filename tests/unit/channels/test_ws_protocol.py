"""Seed 002's frames: parsing what clients send, and the update frames made from job events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from patchbay.channels.ws.protocol import (
    AddFrame,
    AuthFrame,
    BadFrame,
    CancelFrame,
    ListenFrame,
    bad,
    dumps,
    failed,
    parse,
    to_turn,
    update,
)
from patchbay.schemas.jobs import ErrorInfo, JobEvent

JOB = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
SEED_ADD: dict[str, Any] = {
    "type": "add",
    "id": "my-custom-id",
    "query": "How tall is it?",
    "assistant": {
        "streams": [
            {
                "provider": "openai",
                "settings": {"model": "gpt-3.5-turbo"},
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"insert": "history"},
                    {"role": "user", "content": "{query}"},
                ],
            }
        ]
    },
    "history": [
        {"role": "user", "content": "Where is the eiffel tower?"},
        {"role": "system", "content": "The Eiffel Tower is located in Paris, France."},
    ],
}


def test_the_seed_add_parses_and_becomes_a_turn() -> None:
    frame = parse(json.dumps(SEED_ADD))
    assert isinstance(frame, AddFrame)
    turn = to_turn(frame)
    assert (turn.channel, turn.text) == ("ws", "How tall is it?")
    assert [m.role for m in turn.history or []] == ["user", "system"]
    assert turn.metadata == {"client_id": "my-custom-id"}
    dumped = turn.model_dump(exclude_none=True)
    assert dumped["assistant"]["streams"][0]["messages"][1] == {"insert": "history"}


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('{"type": "auth", "api_key": "pb-1"}', AuthFrame),
        (f'{{"type": "listen", "job_id": "{JOB}"}}', ListenFrame),
        (f'{{"type": "listen", "job_id": "{JOB}", "after": 7, "extra": 1}}', ListenFrame),
        (f'{{"type": "cancel", "job_id": "{JOB}"}}', CancelFrame),
        ('{"type": "add", "id": 3, "query": "hi"}', AddFrame),
    ],
)
def test_good_frames_parse(text: str, kind: type) -> None:
    assert isinstance(parse(text), kind)


@pytest.mark.parametrize(
    ("text", "message", "job_id", "client_id"),
    [
        ("{nope", "a frame is one JSON object; this one is not valid JSON", None, None),
        ("[]", 'a frame is a JSON object with a "type", e.g. {"type": "listen", …}', None, None),
        (
            f'{{"type": "stop", "job_id": "{JOB}"}}',
            "unknown frame type 'stop'; send one of auth, add, listen, cancel",
            JOB,
            None,
        ),
        (
            '{"job_id": "x"}',
            "unknown frame type None; send one of auth, add, listen, cancel",
            "x",
            None,
        ),
        ('{"type": "add", "query": "q"}', "add: id: Field required", None, None),
        ('{"type": "add", "id": "a"}', "add: query: Field required", None, "a"),
        (
            '{"type": "add", "id": true, "query": "q"}',
            "add: id: Input should be a valid string",
            None,
            None,
        ),
        ('{"type": "listen"}', "listen: job_id: Field required", None, None),
        (
            '{"type": "listen", "job_id": "../users"}',
            "listen: job_id: not a job id (the `job_id` a `resp_add` gave)",
            "../users",
            None,
        ),
        (
            f'{{"type": "listen", "job_id": "{JOB}", "after": -1}}',
            "listen: after: Input should be greater than or equal to 0",
            JOB,
            None,
        ),
        ('{"type": "auth"}', "auth: api_key: Field required", None, None),
    ],
)
def test_bad_frames_say_what_is_wrong(
    text: str, message: str, job_id: str | None, client_id: str | None
) -> None:
    with pytest.raises(BadFrame) as caught:
        parse(text)
    assert (caught.value.message, caught.value.job_id, caught.value.client_id) == (
        message,
        job_id,
        client_id,
    )


@pytest.mark.parametrize(
    ("assistant", "message"),
    [
        (
            {"streams": [{"messages": [{"role": "user", "content": "{nope}"}]}]},
            "add: assistant: stream 1: unknown placeholder {nope}; known here: {query}",
        ),
        ({"streams": []}, "add: assistant.streams: List should have at least 1 item"),
        (
            {"streams": [{"messages": [{"role": "user", "content": "x"}], "extra": 1}]},
            "add: assistant.streams.0.extra: Extra inputs are not permitted",
        ),
    ],
)
def test_template_errors_name_the_field(assistant: dict[str, Any], message: str) -> None:
    frame = parse(json.dumps({"type": "add", "id": 1, "query": "q", "assistant": assistant}))
    assert isinstance(frame, AddFrame)
    with pytest.raises(BadFrame) as caught:
        to_turn(frame)
    assert caught.value.message.startswith(message)
    assert caught.value.client_id == 1


def event(type_: Any, seq: int = 2, **fields: Any) -> JobEvent:
    return JobEvent(job_id=JOB, seq=seq, type=type_, **fields)


@pytest.mark.parametrize(
    ("job_event", "frame"),
    [
        (
            event("queued", 1, position=3),
            {"type": "pending", "job_id": JOB, "seq": 1, "position": 3},
        ),
        (event("queued", 1), {"type": "pending", "job_id": JOB, "seq": 1, "position": None}),
        (
            event("running", delta=" E"),
            {"type": "running", "job_id": JOB, "seq": 2, "message": " E"},
        ),
        (event("running"), {"type": "running", "job_id": JOB, "seq": 2, "message": ""}),
        (event("restarted"), {"type": "restarted", "job_id": JOB, "seq": 2}),
        (event("done", content="all"), {"type": "done", "job_id": JOB, "seq": 2}),
        (event("cancelled", content="part"), {"type": "cancelled", "job_id": JOB, "seq": 2}),
        (
            event("failed", error=ErrorInfo(code="upstream_error", message="test error")),
            {
                "type": "failed",
                "job_id": JOB,
                "seq": 2,
                "message": "test error",
                "code": "upstream_error",
                "retryable": False,
            },
        ),
    ],
)
def test_job_events_become_seed_updates(job_event: JobEvent, frame: dict[str, Any]) -> None:
    assert update(job_event) == frame


def test_failed_frames_carry_what_is_known() -> None:
    assert failed("no") == {"type": "failed", "message": "no"}
    assert failed("later", job_id=JOB, client_id="c", retryable=True) == {
        "type": "failed",
        "job_id": JOB,
        "id": "c",
        "message": "later",
        "retryable": True,
    }
    assert bad(BadFrame("x", client_id=2)) == {"type": "failed", "id": 2, "message": "x"}
    assert json.loads(dumps({"type": "done", "job_id": JOB})) == {"type": "done", "job_id": JOB}
