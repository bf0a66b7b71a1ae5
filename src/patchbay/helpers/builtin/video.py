"""Video helper: MP4, WebM and QuickTime to Markdown: the audio track transcribed, plus the text
on screen, read by OCR from key frames spread over the video. All offline, decoded by PyAV, in a
child process (`Isolated`) that loads Whisper and RapidOCR once."""

from __future__ import annotations

import io
import re
from functools import partial
from typing import TYPE_CHECKING

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field

from patchbay.helpers.builtin.ocr import OcrEngine
from patchbay.helpers.builtin.speech import SpeechOptions, Transcriber, model_directory
from patchbay.helpers.isolated import Isolated
from patchbay.helpers.sdk import Helper, UnreadableInput
from patchbay.schemas.helpers import ToText

if TYPE_CHECKING:
    from PIL.Image import Image

MEDIA_TYPES = ("video/mp4", "video/webm", "video/quicktime")
MAX_DECODED_KEYFRAMES = 2000  # a bound on the work of one video, whatever its length


class VideoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error, not ignored

    speech: SpeechOptions = SpeechOptions()
    frames: int = Field(default=6, ge=0, le=100)  # key frames read by OCR, spread over the video
    threads: int = Field(default=2, gt=0)
    max_body_bytes: int = Field(default=500 * 1024 * 1024, gt=0)
    timeout_s: float = Field(default=3600, gt=0)  # a video converted for longer is stopped (504)


class Probe(BaseModel):
    has_audio: bool
    has_video: bool
    duration_s: float | None


def probe(data: bytes) -> Probe:
    """What tracks a video has and how long it lasts."""
    import av

    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            duration = container.duration / 1_000_000 if container.duration else None
            return Probe(
                has_audio=bool(container.streams.audio),
                has_video=bool(container.streams.video),
                duration_s=duration,
            )
    except (av.FFmpegError, ValueError, EOFError) as exc:
        raise UnreadableInput(f"not a readable video: {exc}") from exc


def key_frames(data: bytes, *, count: int, duration_s: float | None) -> list[tuple[float, Image]]:
    """Up to `count` key frames (I-frames, the cheap ones to decode), one per equal slice of the
    video: (seconds from the start, picture)."""
    import av

    chosen: list[tuple[float, Image]] = []
    slice_s = (duration_s / count) if duration_s and count else None
    with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        taken: set[int] = set()
        try:
            for decoded, frame in enumerate(container.decode(stream)):
                if len(chosen) >= count or decoded >= MAX_DECODED_KEYFRAMES:
                    break
                seconds = float(frame.time or 0.0)
                bucket = int(seconds // slice_s) if slice_s else len(chosen)
                if bucket not in taken:
                    taken.add(bucket)
                    chosen.append((seconds, frame.to_image()))  # type: ignore[no-untyped-call]
        except (av.FFmpegError, ValueError) as exc:
            if not chosen:
                raise UnreadableInput(f"no video frame could be decoded: {exc}") from exc
    return chosen


def timestamp(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class VideoReader:
    """Speech and OCR engines of its own, both loaded when made (in the helper's child, once).
    Blocking calls."""

    def __init__(self, options: VideoOptions) -> None:
        self.options = options
        self.transcriber = Transcriber(options.speech)
        self.ocr = OcrEngine(threads=options.threads)
        self.ocr.warm_up()

    def convert(self, data: bytes) -> ToText:
        info = probe(data)
        if not info.has_audio and not info.has_video:
            raise UnreadableInput("this file has neither an audio nor a video track")
        sections = []
        duration = info.duration_s
        if info.has_audio:
            speech = self.transcriber.transcribe(data)
            duration = duration or speech.duration_s
            sections.append(f"## Transcript\n\n{speech.text or '_(no speech)_'}")
        if info.has_video and self.options.frames:
            sections.append(self._screen_text(data, duration))
        return ToText(
            text="\n\n".join(sections),
            format="markdown",
            duration_s=None if duration is None else round(duration, 3),
        )

    def _screen_text(self, data: bytes, duration_s: float | None) -> str:
        seen: set[str] = set()
        blocks = []
        for seconds, image in key_frames(data, count=self.options.frames, duration_s=duration_s):
            text = self.ocr.read(image).strip()
            key = re.sub(r"\W+", " ", text).strip().lower()
            if key and key not in seen:  # a slide shown for a minute is read once
                seen.add(key)
                blocks.append(f"### {timestamp(seconds)}\n\n{text}")
        return "## Text on screen\n\n" + ("\n\n".join(blocks) or "_(none)_")


class VideoHelper(Helper):
    name = "video"
    description = "Turns videos into text: the speech transcribed and the text on screen, offline."
    version = "1"

    def __init__(self, options: VideoOptions | None = None) -> None:
        self.options = options or VideoOptions()
        super().__init__(max_body_bytes=self.options.max_body_bytes)
        # In a child process, one video at a time: a decoder that never ends on a crafted file
        # is stopped at the capability's timeout instead of holding the helper for good.
        self.reader = Isolated(partial(VideoReader, self.options), name="video reader")
        timeout_s = self.options.timeout_s
        self.to_text(*MEDIA_TYPES, name="video-to-text", timeout_s=timeout_s)(self.video_to_text)

    async def startup(self) -> None:
        # Fail before registering when the model is missing, and join base now, not mid-call.
        await anyio.to_thread.run_sync(model_directory, self.options.speech)
        # The child (Whisper and RapidOCR: ~270 MB) starts with the first file: a helper nobody
        # sends files to holds no model.

    async def shutdown(self) -> None:
        self.reader.close()

    async def video_to_text(self, data: bytes, media_type: str) -> ToText:
        """A video as Markdown: a transcript of its speech, then the text seen on screen."""
        # `data` (up to 500 MB) goes to the child as it is, not copied into a pickle
        converted: ToText = await self.reader.run("convert", data)
        return converted


Options = VideoOptions  # what `patchbay helper builtin` validates its options with


def create_helper(options: VideoOptions | None = None) -> VideoHelper:
    return VideoHelper(options)
