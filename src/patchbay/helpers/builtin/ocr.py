"""OCR helper: the text in images (PNG, JPEG, WebP, GIF, BMP, TIFF), read offline by RapidOCR.

RapidOCR's PP-OCR ONNX models ship inside its wheel and are loaded in a child process
(`Isolated`), where each image is read. `OcrEngine` is also what the documents and video helpers
use, in their children, for scanned pages and video frames.
"""

from __future__ import annotations

import io
import logging
import threading
from functools import partial
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from patchbay.helpers.isolated import Isolated
from patchbay.helpers.sdk import Helper, InputTooLarge, UnreadableInput
from patchbay.schemas.helpers import ToText

if TYPE_CHECKING:
    from PIL.Image import Image
    from rapidocr import RapidOCR

logger = logging.getLogger(__name__)

MEDIA_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff")


class OcrOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error, not ignored

    max_pixels: int = Field(default=50_000_000, gt=0)  # per image or frame
    max_frames: int = Field(default=20, gt=0)  # pages of a TIFF, frames of a GIF
    threads: int = Field(default=2, gt=0)  # ONNX Runtime threads per recognition
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    timeout_s: float = Field(default=120, gt=0)  # an image read for longer is stopped (504)


class OcrEngine:
    """RapidOCR, loaded on first use; one recognition at a time, as the cores are shared."""

    def __init__(self, *, threads: int = 2, max_pixels: int = 50_000_000) -> None:
        self.threads = threads
        self.max_pixels = max_pixels
        self._engine: RapidOCR | None = None
        self._lock = threading.Lock()

    def _load(self) -> RapidOCR:
        if self._engine is None:
            from rapidocr import RapidOCR  # 2 s of imports, paid by the first image only

            params = {
                "Global.log_level": "error",  # not a line per model file, nor per blank image
                "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            }
            self._engine = RapidOCR(params=params)
        return self._engine

    def check_size(self, width: int, height: int) -> None:
        """Refuse an image of more than `max_pixels`, before anyone decodes it."""
        if width * height > self.max_pixels:
            raise InputTooLarge(
                f"the image is {width}x{height} pixels, over the {self.max_pixels:,} this "
                "helper reads"
            )

    def read(self, image: Image) -> str:
        """The text of one image, a line per detected text line, top to bottom. Blocking."""
        import numpy as np

        self.check_size(image.width, image.height)
        pixels = np.asarray(image.convert("RGB"))
        with self._lock:
            result = self._load()(pixels)
        return "\n".join(getattr(result, "txts", None) or ())

    def warm_up(self) -> None:
        """Load the models now rather than at the first image. Blocking."""
        with self._lock:
            self._load()


def open_image(data: bytes, engine: OcrEngine | None = None) -> Image:
    """Pillow's view of `data`, fully decoded (once `engine` has checked its size from the
    header: a small PNG can unpack to gigabytes); corrupt or unknown data raises UnreadableInput."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        if engine is not None:
            engine.check_size(image.width, image.height)
        image.load()
    except Image.DecompressionBombError as exc:
        raise InputTooLarge(f"the image has too many pixels: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UnreadableInput(f"not a readable image: {exc}") from exc
    return image


def read_frames(engine: OcrEngine, data: bytes, *, max_frames: int) -> tuple[str, int]:
    """The text of every frame (TIFF pages, GIF frames) up to `max_frames`, each text once,
    and how many frames were read. Blocking."""
    image = open_image(data, engine)
    count = min(getattr(image, "n_frames", 1), max_frames)
    texts: list[str] = []
    for index in range(count):
        if index:
            try:
                image.seek(index)
            except (EOFError, OSError) as exc:
                raise UnreadableInput(f"frame {index + 1} cannot be read: {exc}") from exc
        text = engine.read(image).strip()
        if text and text not in texts:
            texts.append(text)
    return "\n\n".join(texts), count


class ImageReader:
    """The OCR engine, loaded when made (in the helper's child, once). Blocking calls."""

    def __init__(self, options: OcrOptions) -> None:
        self.options = options
        self.engine = OcrEngine(threads=options.threads, max_pixels=options.max_pixels)
        self.engine.warm_up()

    def convert(self, data: bytes) -> ToText:
        text, frames = read_frames(self.engine, data, max_frames=self.options.max_frames)
        return ToText(text=text, format="plain", pages=frames if frames > 1 else None)


class OcrHelper(Helper):
    name = "ocr"
    description = "Reads the text in images (OCR), offline."
    version = "1"

    def __init__(self, options: OcrOptions | None = None) -> None:
        self.options = options or OcrOptions()
        super().__init__(max_body_bytes=self.options.max_body_bytes)
        # In a child process, one image at a time: a decoder that never ends on a crafted file
        # is stopped at the capability's timeout instead of holding the helper for good. The
        # child (RapidOCR's models: ~90 MB) starts with the first image.
        self.reader = Isolated(partial(ImageReader, self.options), name="ocr reader")
        timeout_s = self.options.timeout_s
        self.to_text(*MEDIA_TYPES, name="image-to-text", timeout_s=timeout_s)(self.image_to_text)

    async def image_to_text(self, data: bytes, media_type: str) -> ToText:
        """The text in an image, a line per text line; every page of a multi-page TIFF."""
        converted: ToText = await self.reader.run("convert", data)
        return converted

    async def shutdown(self) -> None:
        self.reader.close()


Options = OcrOptions  # what `patchbay helper builtin` validates its options with


def create_helper(options: OcrOptions | None = None) -> OcrHelper:
    return OcrHelper(options)
