"""A job crosses RabbitMQ whole: its messages, and the files a model reads itself, bytes and all."""

from __future__ import annotations

import orjson

from patchbay.queue.base import JobSpec, PromptFile, PromptMessage
from patchbay.queue.rabbitmq import decode_job, encode_job


def job(*messages: PromptMessage) -> JobSpec:
    return JobSpec(
        job_id="j",
        user_id="u",
        chat_id="c",
        message_id="m",
        model="vision",
        messages=messages,
        prefix_hash="h",
    )


def test_a_job_with_files_round_trips() -> None:
    picture = PromptFile("image/png", b"\x89PNG\r\n\x1a\n\x00\xff", "[a picture]")
    sent = job(PromptMessage("user", "Look:", (picture,)), PromptMessage("assistant", "A cat."))
    assert decode_job(encode_job(sent)) == sent


def test_a_job_queued_before_messages_had_files_is_read() -> None:
    body = orjson.loads(encode_job(job(PromptMessage("user", "hi"))))
    body["messages"] = [["user", "hi"]]
    assert decode_job(orjson.dumps(body)) == job(PromptMessage("user", "hi"))
