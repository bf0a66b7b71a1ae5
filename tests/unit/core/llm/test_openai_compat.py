"""What the OpenAI-compatible model puts on the wire for files: images as data URLs, wav and mp3
as `input_audio`, other types as `file` parts; text alone stays a plain string."""

from __future__ import annotations

import base64
from typing import Any

import llm
import pytest

from patchbay.core.llm.openai_compat import OpenAICompatModel
from patchbay.http1 import Http1Client

PNG = b"\x89PNG\r\n\x1a\n picture"
B64 = base64.b64encode(PNG).decode()


def model() -> OpenAICompatModel:
    return OpenAICompatModel(
        model_id="vision",
        upstream_model="gpt-vision",
        api_key=None,
        client=Http1Client("http://127.0.0.1:9/v1"),  # never called: nothing is sent here
        attachment_types=frozenset({"image/png", "audio/wav", "audio/mpeg", "application/pdf"}),
    )


def wire(*attachments: llm.Attachment, text: str = "Look:") -> Any:
    vision = model()
    prompt = vision.conversation().prompt(text, attachments=list(attachments)).prompt
    return vision.request_body(prompt, stream=False)["messages"][-1]["content"]


def test_text_alone_stays_a_string() -> None:
    assert wire() == "Look:"


@pytest.mark.parametrize(
    ("media_type", "part"),
    [
        ("image/png", {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{B64}"}}),
        ("audio/wav", {"type": "input_audio", "input_audio": {"data": B64, "format": "wav"}}),
        ("audio/mpeg", {"type": "input_audio", "input_audio": {"data": B64, "format": "mp3"}}),
        (
            "application/pdf",
            {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{B64}"}},
        ),
    ],
)
def test_a_file_is_a_content_part(media_type: str, part: dict[str, object]) -> None:
    assert wire(llm.Attachment(type=media_type, content=PNG)) == [
        {"type": "text", "text": "Look:"},
        part,
    ]


def test_a_file_alone_has_no_text_part() -> None:
    (part,) = wire(llm.Attachment(type="image/png", content=PNG), text="")
    assert part["type"] == "image_url"


def test_earlier_messages_carry_their_files() -> None:
    vision = model()
    earlier = [llm.user("What is this?", llm.Attachment(type="image/png", content=PNG))]
    earlier.append(llm.assistant("A cat."))
    prompt = vision.conversation().prompt("And now?", messages=earlier).prompt
    first, answer, question = vision.request_body(prompt, stream=True)["messages"]
    assert first["content"][1]["image_url"]["url"] == f"data:image/png;base64,{B64}"
    assert answer == {"role": "assistant", "content": "A cat."}
    assert question == {"role": "user", "content": "And now?"}
