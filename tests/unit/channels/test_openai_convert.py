"""Converting OpenAI requests into turns, and events into OpenAI chunks."""

from __future__ import annotations

import json

import pytest

from patchbay.channels.openai_compat.convert import ChunkWriter, completion, to_turn
from patchbay.channels.openai_compat.schemas import ChatCompletionRequest
from patchbay.errors import InvalidRequest
from patchbay.schemas.chats import Usage
from patchbay.schemas.options import MAX_TEXT


def request(messages: list[dict[str, object]], **extra: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": messages, **extra})


def test_all_but_the_last_message_become_history() -> None:
    turn = to_turn(
        request(
            [
                {"role": "developer", "content": "rules"},
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}],
                },
            ]
        )
    )
    assert turn.text == "cd"
    assert [(m.role, m.content) for m in turn.history or []] == [
        ("system", "rules"),
        ("user", "a"),
        ("assistant", "b"),
    ]
    assert turn.channel == "openai" and turn.model == "m"


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


def test_the_files_of_earlier_messages_go_with_the_history() -> None:
    turn = to_turn(
        request(
            [
                {"role": "user", "content": [{"type": "text", "text": "What is it?"}, IMAGE]},
                {"role": "assistant", "content": "A cat."},
                {"role": "user", "content": "Sure?"},
            ]
        )
    )
    first, answer = turn.history or []
    assert [a.data for a in first.attachments] == [IMAGE["image_url"]["url"]]  # type: ignore[index]
    assert answer.attachments == [] and turn.attachments == []


def test_a_single_message_has_no_history() -> None:
    assert to_turn(request([{"role": "user", "content": "hi"}])).history is None


def test_options_pass_through() -> None:
    turn = to_turn(
        request(
            [{"role": "user", "content": "hi"}],
            stop="END",
            max_tokens=10,
            max_completion_tokens=20,
            temperature=0.5,
            seed=3,
            user="ann",  # taken, and not passed on
        )
    )
    assert turn.options.model_dump(exclude_none=True) == {
        "stop": ["END"],
        "max_tokens": 20,
        "temperature": 0.5,
        "seed": 3,
    }


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            "image_url",
        ),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "last message"),
        ([{"role": "user", "content": None}], "content is required"),
        ([{"role": "tool", "content": "x"}], "'tool'"),
        (
            [{"role": "user", "content": [IMAGE] * 21}, {"role": "user", "content": "and?"}],
            r"messages\[0\]\.attachments: List should have at most 20 items",
        ),
        ([{"role": "user", "content": "x" * (MAX_TEXT + 1)}], r"messages\[0\]\.content"),
    ],
)
def test_unsupported_requests_say_why(messages: list[dict[str, object]], needle: str) -> None:
    with pytest.raises(InvalidRequest, match=needle):
        to_turn(request(messages))


def decode(lines: bytes) -> list[object]:
    out: list[object] = []
    for line in lines.decode().split("\n\n"):
        if line:
            data = line.removeprefix("data: ")
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_chunks_carry_null_usage_until_the_usage_chunk() -> None:
    writer = ChunkWriter(job_id="J", model="m", include_usage=True)
    delta = decode(writer.delta({"content": "x"}))[0]
    assert isinstance(delta, dict)
    assert delta["usage"] is None and delta["id"] == "chatcmpl-J"
    stop, usage, done = decode(writer.end("stop", Usage(input_tokens=2, output_tokens=3)))
    assert isinstance(stop, dict) and isinstance(usage, dict)
    assert stop["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 5
    assert done == "[DONE]"


def test_chunks_without_usage_have_no_usage_key() -> None:
    writer = ChunkWriter(job_id="J", model="m", include_usage=False)
    chunk = decode(writer.delta({"content": "x"}))[0]
    assert isinstance(chunk, dict) and "usage" not in chunk
    assert len(decode(writer.end(None, None))) == 2


def test_completion_counts_missing_usage_as_zero() -> None:
    body = completion(job_id="J", model="m", content="hi", finish_reason=None, usage=None)
    assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert body["choices"][0]["finish_reason"] == "stop"
