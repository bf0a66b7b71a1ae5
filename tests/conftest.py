"""Shared fixtures. `llm` reads its plugin list and user dir at import, so set them first."""

from __future__ import annotations

import os
import tempfile

os.environ["LLM_LOAD_PLUGINS"] = "llm-echo"
os.environ["LLM_USER_PATH"] = tempfile.mkdtemp(prefix="patchbay-llm-user-")
for name in list(os.environ):
    if name.startswith("PATCHBAY_"):
        del os.environ[name]

import socket  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from patchbay.config import Settings  # noqa: E402
from tests.support.stack import Stack, register_models, running_stack  # noqa: E402
from tests.support.upstream import MockUpstream  # noqa: E402

ADMIN_KEY = "pb-test-admin-0123456789abcdef0123456789abcdef"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and never handed out before in this run: the kernel may give the same
    ephemeral port to two quick asks, and two servers of one test would then collide."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "secret_key": "test-secret",
        "admin_key": ADMIN_KEY,
        "local_model": {"enabled": False},
        "llm_log": {"flush_interval_s": 0.01},
        "core": {"port": free_port()},
        "openai": {"port": free_port()},
        "ws": {"port": free_port()},
        "web": {"port": free_port()},
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def upstream() -> Iterator[MockUpstream]:
    with MockUpstream.running() as mock:
        yield mock


@pytest.fixture
def stack(settings: Settings, upstream: MockUpstream) -> Iterator[Stack]:
    with running_stack(settings) as running:
        register_models(running, upstream.base_url)
        yield running
