"""The built-in helpers' plumbing that needs no model: options, model choice, bad files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from patchbay.helpers import InputTooLarge, UnreadableInput
from patchbay.helpers.builtin import BUILTINS, create_builtin
from patchbay.helpers.builtin.documents import pdf_layout
from patchbay.helpers.builtin.ocr import OcrEngine, open_image
from patchbay.helpers.builtin.speech import (
    ModelUnavailable,
    SpeechOptions,
    decode_audio,
    model_directory,
)
from patchbay.helpers.builtin.video import probe, timestamp
from tests.support import media


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_declares_a_to_text_capability(name: str) -> None:
    helper = create_builtin(name)
    manifest = helper.manifest(f"http://127.0.0.1:{BUILTINS[name].port}")
    assert manifest.name == name
    [capability] = manifest.capabilities
    assert capability.kind == "to-text" and capability.media_types


def test_builtin_options_are_validated() -> None:
    assert create_builtin("speech", {"model": "tiny.en"}).options.model == "tiny.en"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="beam_size"):
        create_builtin("speech", {"beam_size": 0})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        create_builtin("ocr", {"colour": "red"})


def test_speech_models_come_from_packages_or_a_directory(tmp_path: Path) -> None:
    assert (model_directory(SpeechOptions(model="tiny.en")) / "model.bin").is_file()
    with pytest.raises(ModelUnavailable, match=r"neither 'base', 'tiny\.en' nor a directory"):
        model_directory(SpeechOptions(model=str(tmp_path)))


@pytest.mark.parametrize(
    "data", [b"", b"not an image at all", media.png(Image.new("RGB", (4, 4)))[:30]]
)
def test_unreadable_images(data: bytes) -> None:
    with pytest.raises(UnreadableInput, match="not a readable image"):
        open_image(data)


def test_images_over_the_pixel_limit_are_refused_before_ocr() -> None:
    engine = OcrEngine(max_pixels=100)
    with pytest.raises(InputTooLarge, match="20x20 pixels"):
        engine.read(Image.new("RGB", (20, 20)))


def test_unreadable_pdf_audio_and_video() -> None:
    with pytest.raises(UnreadableInput, match="not a readable PDF"):
        pdf_layout(b"%PDF-1.7 and then nothing")
    with pytest.raises(UnreadableInput, match="no audio could be decoded"):
        decode_audio(b"RIFF....WAVEfmt garbage")
    with pytest.raises(UnreadableInput, match="not a readable video"):
        probe(io.BytesIO(b"\x00\x00\x00\x18ftypmp42 broken").getvalue())


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0:00"), (61.9, "1:01"), (3600 + 125, "1:02:05")]
)
def test_timestamps(seconds: float, text: str) -> None:
    assert timestamp(seconds) == text
