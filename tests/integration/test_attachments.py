"""Attachments: files with a turn (JSON, multipart, OpenAI content parts) become text by helpers."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from patchbay.cli.main import app as cli
from patchbay.config import Settings
from patchbay.schemas.helpers import HELPER_KEY_HEADER
from patchbay.tokens import helper_key
from tests.support.hand_helper import HandHelper, running_helper
from tests.support.stack import Stack, register_models, running_stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration

NOTE = b"The secret word is pineapple."


@pytest.fixture
def helper() -> Iterator[HandHelper]:
    with running_helper() as hand:
        yield hand


@pytest.fixture
def stack(settings: Settings, upstream: MockUpstream, helper: HandHelper) -> Iterator[Stack]:
    """The usual stack, with `helper` registered on its core."""
    with running_stack(settings) as running:
        register_models(running, upstream.base_url)
        register_helper(running, helper)
        yield running


def register_helper(stack: Stack, helper: HandHelper) -> None:
    key = {HELPER_KEY_HEADER: helper_key(stack.settings.installation_secret())}
    response = httpx.post(f"{stack.core_url}/v1/helpers", json=helper.manifest(), headers=key)
    response.raise_for_status()


def auth(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.admin_key}"}


def last_prompt(upstream: MockUpstream) -> str:
    return str(upstream.requests[-1]["messages"][-1]["content"])


def test_a_turn_with_an_attachment(
    stack: Stack, upstream: MockUpstream, helper: HandHelper
) -> None:
    attachment = {
        "media_type": "text/plain",
        "data": base64.b64encode(NOTE).decode(),
        "filename": "notes.txt",
    }
    result = httpx.post(
        f"{stack.core_url}/v1/turns?wait=true",
        json={"text": "What is the secret word?", "attachments": [attachment]},
        headers=auth(stack),
    ).json()
    assert result["outcome"]["type"] == "done"
    assert last_prompt(upstream) == (
        "What is the secret word?\n\n[Attached: notes.txt (text/plain)]\n" + NOTE.decode()
    )
    chat_id = result["turn"]["chat_id"]
    question = httpx.get(f"{stack.core_url}/v1/chats/{chat_id}/messages", headers=auth(stack))
    (kept,) = question.json()[0]["attachments"]
    assert (kept["filename"], kept["size"], kept["text"]) == ("notes.txt", len(NOTE), NOTE.decode())
    stored = stack.settings.data_dir / "files" / kept["id"][:2] / kept["id"]
    assert stored.read_bytes() == NOTE
    # the next turn's history still carries the file's text
    httpx.post(
        f"{stack.core_url}/v1/turns?wait=true",
        json={"text": "And again?", "chat_id": chat_id},
        headers=auth(stack),
    )
    assert "pineapple" in upstream.requests[-1]["messages"][0]["content"]


def test_multipart_upload(stack: Stack, upstream: MockUpstream, helper: HandHelper) -> None:
    response = httpx.post(
        f"{stack.core_url}/v1/turns/upload?wait=true",
        data={"turn": json.dumps({"text": "Read this."})},
        files=[("files", ("notes.txt", NOTE, "text/plain"))],
        headers=auth(stack),
    )
    assert response.json()["outcome"]["type"] == "done", response.text
    assert last_prompt(upstream).endswith(NOTE.decode())
    missing = httpx.post(
        f"{stack.core_url}/v1/turns/upload", files=[("files", ("a.txt", NOTE))], headers=auth(stack)
    )
    assert missing.status_code == 400 and "turn" in missing.json()["error"]["message"]


def test_multipart_files_sent_as_octet_stream_are_known_by_their_name(
    stack: Stack, upstream: MockUpstream, helper: HandHelper
) -> None:
    # What `curl -F files=@notes.md` sends: curl names a few types only (not .md, .csv, .docx).
    response = httpx.post(
        f"{stack.core_url}/v1/turns/upload?wait=true",
        data={"turn": json.dumps({"text": "Read this."})},
        files=[("files", ("notes.md", NOTE, "application/octet-stream"))],
        headers=auth(stack),
    )
    assert response.status_code == 200, response.text
    assert last_prompt(upstream) == (
        "Read this.\n\n[Attached: notes.md (text/markdown)]\n" + NOTE.decode()
    )
    # Mailers and Telegram do the same with files they do not know.
    mailed = {
        "media_type": "application/octet-stream",
        "data": base64.b64encode(NOTE).decode(),
        "filename": "notes.csv",
    }
    response = httpx.post(
        f"{stack.core_url}/v1/turns?wait=true",
        json={"text": "And this.", "attachments": [mailed]},
        headers=auth(stack),
    )
    assert response.status_code == 200, response.text
    assert last_prompt(upstream).startswith("And this.\n\n[Attached: notes.csv (text/csv)]")


def test_openai_content_parts(stack: Stack, upstream: MockUpstream, helper: HandHelper) -> None:
    client = openai.OpenAI(base_url=stack.openai_url + "/v1", api_key=stack.admin_key)
    data_url = "data:text/plain;base64," + base64.b64encode(NOTE).decode()
    content: list[Any] = [
        {"type": "text", "text": "What does the file say?"},
        {"type": "file", "file": {"file_data": data_url, "filename": "n.txt"}},
    ]
    with client:
        answer = client.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": content}]
        )
        assert answer.choices[0].message.content == upstream.reply
        assert "pineapple" in last_prompt(upstream)
        with pytest.raises(openai.BadRequestError, match="data: URL"):
            client.chat.completions.create(
                model="mock-gpt",
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}
                        ],
                    }
                ],
            )


def test_a_file_a_model_read_itself_is_made_text_for_one_that_cannot(
    settings: Settings, upstream: MockUpstream, helper: HandHelper
) -> None:
    note = {"media_type": "text/plain", "data": base64.b64encode(NOTE).decode()}
    first = {"text": "Keep this.", "model": "reads-text", "attachments": [note]}
    with running_stack(settings) as stack:
        register_models(stack, upstream.base_url)
        register_helper(stack, helper)
        env = {"PATCHBAY_CORE__URL": stack.core_url, "PATCHBAY_API_KEY": stack.admin_key}
        args = ["models", "add", "reads-text", "--provider", "mock", "--upstream-model", "gpt-x"]
        result = CliRunner().invoke(cli, [*args, "--attachment-type", "text/plain"], env=env)
        assert result.exit_code == 0, result.output
        url = f"{stack.core_url}/v1/turns?wait=true"
        chat_id = httpx.post(url, json=first, headers=auth(stack)).json()["turn"]["chat_id"]
        assert helper.calls == []  # the model read the file itself
        ask_a_text_model(stack, upstream, chat_id, "What is the secret word?")
    with running_stack(settings) as stack:  # the core restarted
        register_helper(stack, helper)
        ask_a_text_model(stack, upstream, chat_id, "Again?")
    assert helper.calls == ["text"]  # made once, and kept


def ask_a_text_model(stack: Stack, upstream: MockUpstream, chat_id: str, question: str) -> None:
    later = {"text": question, "model": "mock-gpt", "chat_id": chat_id}
    url = f"{stack.core_url}/v1/turns?wait=true"
    assert httpx.post(url, json=later, headers=auth(stack)).json()["outcome"]["type"] == "done"
    assert upstream.requests[-1]["messages"][0]["content"].endswith(NOTE.decode())


def test_a_delivery_taken_before_is_refused_before_its_files_are_read(
    stack: Stack, upstream: MockUpstream, helper: HandHelper
) -> None:
    note = {"media_type": "text/plain", "data": base64.b64encode(NOTE).decode()}
    turn = {"channel": "email", "text": "Read this", "attachments": [note], "delivery_id": "<m@x>"}
    first = httpx.post(f"{stack.core_url}/v1/turns?wait=true", json=turn, headers=auth(stack))
    assert first.status_code == 200 and helper.calls == ["text"]
    again = httpx.post(f"{stack.core_url}/v1/turns", json=turn, headers=auth(stack))
    assert again.status_code == 409 and again.json()["error"]["code"] == "duplicate_delivery"
    assert helper.calls == ["text"]  # read once


def test_files_in_an_openai_history_are_read_once(
    stack: Stack, upstream: MockUpstream, helper: HandHelper
) -> None:
    file = {"file_data": "data:text/plain;base64," + base64.b64encode(NOTE).decode()}
    note: Any = {"type": "file", "file": {**file, "filename": "notes.txt"}}
    # A conversation held elsewhere: patchbay has stored none of it.
    messages: list[Any] = [
        {"role": "user", "content": [{"type": "text", "text": "Keep this."}, note]},
        {"role": "assistant", "content": "Kept."},
        {"role": "user", "content": "What is the secret word?"},
    ]
    client = openai.OpenAI(base_url=stack.openai_url + "/v1", api_key=stack.admin_key)
    with client:
        answer = client.chat.completions.create(model="mock-gpt", messages=messages)
        first = upstream.requests[-1]["messages"][0]["content"]
        assert first.startswith("Keep this.") and first.endswith(NOTE.decode())
        assert helper.calls == ["text"]
        # The same conversation, continued: the stored chat's file goes again, not read again.
        messages += [{"role": "assistant", "content": answer.choices[0].message.content}]
        messages += [{"role": "user", "content": "And once more?"}]
        client.chat.completions.create(model="mock-gpt", messages=messages)
    assert upstream.requests[-1]["messages"][0]["content"] == first
    assert helper.calls == ["text"]
    (chat,) = stack.chats()
    with stack.admin() as admin:
        stored = admin.get(f"/v1/chats/{chat['id']}/messages").json()
    assert [m["content"] for m in stored[::2]] == [
        "Keep this.",
        "What is the secret word?",
        "And once more?",
    ]
    (kept,) = stored[0]["attachments"]
    assert (kept["filename"], kept["text"]) == ("notes.txt", NOTE.decode())


@pytest.mark.parametrize(
    ("attachment", "expected"),
    [
        ({"media_type": "text/plain", "data": ""}, "empty"),
        ({"media_type": "text/plain", "data": "%%%not base64"}, "base64"),
        ({"data": base64.b64encode(NOTE).decode()}, "media_type"),
        ({"media_type": "application/x-nothing", "data": "AAAA"}, "application/x-nothing"),
    ],
)
@pytest.mark.parametrize("in_history", [False, True], ids=["turn", "history"])
def test_bad_attachments_are_refused_before_anything_is_stored(
    stack: Stack, helper: HandHelper, attachment: dict[str, str], expected: str, in_history: bool
) -> None:
    turn: dict[str, Any] = {"text": "hi", "attachments": [attachment]}
    if in_history:
        said = {"role": "user", "content": "see", "attachments": [attachment]}
        turn = {"text": "hi", "history": [said, {"role": "assistant", "content": "ok"}]}
    response = httpx.post(f"{stack.core_url}/v1/turns", json=turn, headers=auth(stack))
    message = response.json()["error"]["message"]
    assert response.status_code == 400 and expected in message
    where = "history[0].attachments[0]" if in_history else "attachments[0]"
    assert where in message or expected == "application/x-nothing"  # the helper's own words
    assert httpx.get(f"{stack.core_url}/v1/chats", headers=auth(stack)).json() == []


def test_a_file_the_helper_refuses_is_the_callers_error_not_a_bad_gateway(
    settings: Settings, upstream: MockUpstream
) -> None:
    from patchbay.helpers.builtin.documents import DocumentsHelper
    from patchbay.helpers.runner import Serving, build_app
    from tests.conftest import free_port
    from tests.integration.test_helper_sdk import wait_for
    from tests.support.servers import serve_in_thread

    broken = {"media_type": "application/pdf", "data": base64.b64encode(b"%PDF-1.4 no").decode()}
    with running_stack(settings) as stack:
        register_models(stack, upstream.base_url)
        port = free_port()
        key = helper_key(stack.settings.installation_secret())
        app = build_app(DocumentsHelper(), Serving(port=port, core_url=stack.core_url, key=key))
        with serve_in_thread(app, port), stack.admin() as admin:
            wait_for(lambda: bool(admin.get("/v1/helpers").json()))
            response = admin.post("/v1/turns", json={"text": "hi", "attachments": [broken]})
    error = response.json()["error"]
    assert "not a readable PDF" in error["message"]
    # A 502 says the server failed, and clients retry it (the OpenAI SDK does, twice).
    assert (response.status_code, error["code"], error["retryable"]) == (
        422,
        "unreadable_input",
        False,
    )
