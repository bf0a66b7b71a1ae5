"""Files a model reads itself: a model marked as reading images is sent them as `image_url` parts
and no helper is asked; a model that does not read them still needs a helper's text."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
from typing import Any

import openai
import pytest
from typer.testing import CliRunner

from patchbay.cli.main import app
from tests.support.media import png, text_image
from tests.support.stack import Stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration

PICTURE = png(text_image(["a cat"], size=(160, 60), px=24))
B64 = base64.b64encode(PICTURE).decode()
IMAGE_PART = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{B64}"}}


@pytest.fixture
def vision(stack: Stack) -> str:
    """The mock upstream once more, as a model that reads PNG and JPEG images itself."""
    env = {"PATCHBAY_CORE__URL": stack.core_url, "PATCHBAY_API_KEY": stack.admin_key}
    args = ["models", "add", "mock-vision", "--provider", "mock", "--upstream-model", "gpt-vision"]
    args += ["--attachment-type", "image/png", "--attachment-type", "IMAGE/JPEG"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    return "mock-vision"


def turn(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    with stack.admin() as admin:
        response = admin.post("/v1/turns?wait=true", json=body)
    assert response.is_success, response.text
    result: dict[str, Any] = response.json()
    assert result["outcome"]["type"] == "done", result
    return result


def test_a_vision_model_is_sent_the_image_without_any_helper(
    stack: Stack, upstream: MockUpstream, vision: str
) -> None:
    picture = {"media_type": "image/png", "data": B64, "filename": "cat.png"}
    first = turn(stack, {"text": "What is it?", "model": vision, "attachments": [picture]})
    request = upstream.requests[-1]
    assert request["model"] == "gpt-vision"
    assert request["messages"][-1]["content"] == [
        {"type": "text", "text": "What is it?"},
        IMAGE_PART,
    ]
    chat_id = first["turn"]["chat_id"]
    with stack.admin() as admin:
        question = admin.get(f"/v1/chats/{chat_id}/messages").json()[0]
        models = {m["name"]: m for m in admin.get("/v1/models").json()}
    (kept,) = question["attachments"]
    assert (kept["id"], kept["text"]) == (hashlib.sha256(PICTURE).hexdigest(), "")
    assert models[vision]["options"] == {"attachment_types": ["image/jpeg", "image/png"]}

    # The picture stays in the chat's history, sent as it is again.
    turn(stack, {"text": "Are you sure?", "chat_id": chat_id, "model": vision})
    first_message, _answer, last = upstream.requests[-1]["messages"]
    assert first_message["content"][1] == IMAGE_PART and last["content"] == "Are you sure?"
    with stack.admin() as admin:
        path = f"/v1/messages/{question['id']}/regenerate?wait=true"
        again = admin.post(path, json={"model": vision})
    assert again.is_success, again.text
    assert upstream.requests[-1]["messages"][-1]["content"][1] == IMAGE_PART

    # A model that reads no images is told a picture was there (no helper made text of it).
    turn(stack, {"text": "And you?", "chat_id": chat_id, "model": "mock-gpt"})
    sent = json.dumps(upstream.requests[-1])
    assert "image_url" not in sent and "[Attached: cat.png (image/png)]" in sent


def test_an_image_url_part_through_the_openai_channel(
    stack: Stack, upstream: MockUpstream, vision: str
) -> None:
    client = openai.OpenAI(base_url=stack.openai_url + "/v1", api_key=stack.admin_key)
    content: list[Any] = [{"type": "text", "text": "What is it?"}, IMAGE_PART]
    with client:
        answer = client.chat.completions.create(
            model=vision, messages=[{"role": "user", "content": content}]
        )
    assert answer.choices[0].message.content == upstream.reply
    assert upstream.requests[-1]["messages"][-1]["content"] == content

    # The client asks on, sending the conversation so far: the picture is seen again.
    follow_up: list[Any] = [
        {"role": "user", "content": content},
        {"role": "assistant", "content": upstream.reply},
        {"role": "user", "content": "Are you sure?"},
    ]
    with openai.OpenAI(base_url=stack.openai_url + "/v1", api_key=stack.admin_key) as again:
        again.chat.completions.create(model=vision, messages=follow_up)
    first, _answer, last = upstream.requests[-1]["messages"]
    assert first["content"] == content and last["content"] == "Are you sure?"
    assert len(stack.chats()) == 1


def test_a_model_that_reads_no_images_still_needs_a_helper(stack: Stack) -> None:
    picture = {"media_type": "image/png", "data": B64}
    with stack.admin() as admin:
        response = admin.post(
            "/v1/turns", json={"text": "What is it?", "model": "mock-gpt", "attachments": [picture]}
        )
    assert response.status_code == 400
    assert "no helper that is up turns 'image/png' into text" in response.text


def test_an_llm_plugin_model_reads_what_it_declares_and_the_call_is_logged(stack: Stack) -> None:
    picture = {"media_type": "image/png", "data": B64}
    result = turn(stack, {"text": "What is it?", "model": "echo", "attachments": [picture]})
    echo = json.loads(result["outcome"]["content"])
    digest = hashlib.sha256(PICTURE).hexdigest()
    assert [a["id"] for a in echo["attachments"]] == [digest]
    assert logged_attachment(stack, digest) == ("image/png", PICTURE)


def logged_attachment(stack: Stack, digest: str) -> tuple[str, bytes] | None:
    """The attachment `llm`'s log database holds under `digest`, once the writer has stored it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if stack.settings.llm_log_path.exists():
            with sqlite3.connect(stack.settings.llm_log_path) as db:
                try:
                    row = db.execute(
                        "select type, content from attachments where id = ?", (digest,)
                    ).fetchone()
                except sqlite3.OperationalError:  # the writer has not made its tables yet
                    row = None
            if row is not None:
                return str(row[0]), bytes(row[1])
        time.sleep(0.05)
    return None
