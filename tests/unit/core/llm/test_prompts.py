"""A job's files reach an `llm` model as attachments when it reads their media type (llm-echo
reads PNG, JPEG and GIF), else as their text."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from patchbay.core.llm.registry import ModelRegistry, ModelTarget
from patchbay.queue.base import PromptFile, PromptMessage
from tests.conftest import make_settings

PNG = b"\x89PNG\r\n\x1a\n picture"
ECHO = ModelTarget(
    name="echo", kind="llm", upstream_model="echo", api_base=None, api_key=None, options={}
)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[ModelRegistry]:
    registry = ModelRegistry(make_settings(tmp_path, llm_log={"enabled": False}))
    yield registry
    await registry.close()


async def echoed(registry: ModelRegistry, *files: PromptFile) -> dict[str, object]:
    messages = [PromptMessage("user", "Look:", files)]
    generation = await registry.start_generation(
        ECHO, conversation_id="c", messages=messages, options={}, stream=False
    )
    result: dict[str, object] = json.loads("".join([d async for d in generation.deltas()]))
    return result


async def test_a_file_the_model_reads_is_an_attachment(registry: ModelRegistry) -> None:
    echo = await echoed(registry, PromptFile("image/png", PNG, "\n[picture as text]"))
    assert echo["prompt"] == "Look:"
    assert echo["attachments"] == [
        {"type": "image/png", "path": None, "url": None, "id": hashlib.sha256(PNG).hexdigest()}
    ]


async def test_a_file_it_does_not_read_is_its_text(registry: ModelRegistry) -> None:
    echo = await echoed(registry, PromptFile("application/pdf", b"%PDF", "\n[report as text]"))
    assert (echo["prompt"], echo["attachments"]) == ("Look:\n[report as text]", [])


async def test_what_a_model_reads_itself(registry: ModelRegistry) -> None:
    assert await registry.accepted_media(ECHO) == {"image/png", "image/jpeg", "image/gif"}
    unknown = ModelTarget(
        name="x",
        kind="llm",
        upstream_model="no-such-model",
        api_base=None,
        api_key=None,
        options={},
    )
    assert await registry.accepted_media(unknown) == frozenset()  # its job fails when it runs
    vision = ModelTarget(
        name="v",
        kind="openai",
        upstream_model="gpt-vision",
        api_base="http://127.0.0.1:9/v1",
        api_key=None,
        options={},
        attachment_types=frozenset({"image/png"}),
    )
    assert await registry.accepted_media(vision) == {"image/png"}
