"""`patchbay up` as a real process tree, for tests that start patchbay the way a user does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import free_port

PATCHBAY = str(Path(sys.executable).with_name("patchbay"))


@dataclass
class Up:
    process: subprocess.Popen[str]
    env: dict[str, str]
    core_url: str
    openai_url: str
    output: list[str] = field(default_factory=list)

    def cli(self, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if key is not None:
            env["PATCHBAY_API_KEY"] = key
        return subprocess.run(
            [PATCHBAY, *args], env=env, capture_output=True, text=True, timeout=120
        )


def up_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATCHBAY_")}
    env.update(
        PATCHBAY_DATA_DIR=str(data_dir),
        PATCHBAY_CORE__PORT=str(free_port()),
        PATCHBAY_OPENAI__PORT=str(free_port()),
        PATCHBAY_WS__PORT=str(free_port()),
        PATCHBAY_WEB__PORT=str(free_port()),
        PATCHBAY_LOG__LEVEL="WARNING",
        PATCHBAY_HELPERS__BUILTIN="[]",  # the tests that need them ask for them
        COLUMNS="200",
    )
    env.update(extra)
    return env


@contextmanager
def patchbay_up(env: dict[str, str], *, timeout_s: float = 120) -> Iterator[Up]:
    """Run `patchbay up` until it says it is up; stop it with SIGTERM afterwards."""
    process = subprocess.Popen(
        [PATCHBAY, "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    up = Up(
        process,
        env,
        f"http://127.0.0.1:{env['PATCHBAY_CORE__PORT']}",
        f"http://127.0.0.1:{env['PATCHBAY_OPENAI__PORT']}",
    )
    deadline = time.monotonic() + timeout_s
    try:
        for line in process.stdout:
            up.output.append(line)
            if "Ctrl-C stops everything" in line or time.monotonic() > deadline:
                break
        yield up
    finally:
        stop(process)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.stdout is not None:
        process.stdout.close()
