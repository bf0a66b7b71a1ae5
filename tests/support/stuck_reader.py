"""Readers of the built-in helpers that never end on some files, made in a child process by
`Isolated` (this module is small, so the child starts quickly)."""

from __future__ import annotations

import time

from patchbay.helpers.builtin.documents import DocumentReader
from patchbay.helpers.builtin.ocr import ImageReader
from patchbay.helpers.builtin.speech import Transcriber
from patchbay.helpers.builtin.video import VideoReader
from patchbay.schemas.helpers import ToText

STUCK = b"STUCK"  # how a file that never ends starts


def hang_if_stuck(data: bytes) -> None:
    """Never return on a file that starts with STUCK, as a crafted file can keep a parser busy."""
    if data.startswith(STUCK):
        time.sleep(3600)


class StuckReader(DocumentReader):
    def convert(self, data: bytes, media_type: str) -> ToText:
        hang_if_stuck(data)
        return super().convert(data, media_type)


class StuckImageReader(ImageReader):
    def convert(self, data: bytes) -> ToText:
        hang_if_stuck(data)
        return super().convert(data)


class StuckTranscriber(Transcriber):
    def transcribe(self, data: bytes) -> ToText:
        hang_if_stuck(data)
        return super().transcribe(data)


class StuckVideoReader(VideoReader):
    def convert(self, data: bytes) -> ToText:
        hang_if_stuck(data)
        return super().convert(data)
