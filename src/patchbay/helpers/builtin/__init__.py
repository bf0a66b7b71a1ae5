"""The built-in helpers, written with the same SDK as anyone's; each runs as its own process.

Each module has `create_helper(options)` and an options model; their heavy libraries (markitdown,
RapidOCR, faster-whisper, PyAV) are imported on first use, from the `helpers` extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass

from patchbay.helpers.sdk import Helper


@dataclass(frozen=True, slots=True)
class Builtin:
    name: str
    module: str
    port: int  # where `patchbay helper builtin NAME` listens unless told otherwise
    summary: str


BUILTINS = {
    builtin.name: builtin
    for builtin in (
        Builtin(
            "documents",
            "patchbay.helpers.builtin.documents",
            8801,
            "PDF, DOCX, XLSX, PPTX, HTML, Markdown, CSV → Markdown",
        ),
        Builtin("ocr", "patchbay.helpers.builtin.ocr", 8802, "images → text (OCR)"),
        Builtin("speech", "patchbay.helpers.builtin.speech", 8803, "audio → text (Whisper)"),
        Builtin("video", "patchbay.helpers.builtin.video", 8804, "video → transcript + OCR"),
    )
}


def create_builtin(name: str, options: Mapping[str, object] | None = None) -> Helper:
    """The built-in helper `name`, its options validated by its own model.

    Raises:
        KeyError: no built-in has that name.
        pydantic.ValidationError: the options are wrong.
    """
    module = importlib.import_module(BUILTINS[name].module)
    helper: Helper = module.create_helper(module.Options.model_validate(dict(options or {})))
    return helper
