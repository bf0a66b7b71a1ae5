"""How much memory the web chat channel takes to pass a large upload on to the core.

Run: `.venv/bin/python bench/web_upload.py [MiB]` (30 by default). A stand-in core (its own
process) reads each body and throws it away; the channel runs here under tracemalloc; curl sends a
form as the page does, its turn first and then one file. Prints the peak of Python's allocations
and the growth of the process's resident memory (VmHWM) during the upload.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from patchbay.channels.web.app import create_app
from patchbay.config import Settings

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: `bench.procs` is importable from the checkout
    sys.path.insert(0, str(ROOT))

from bench.procs import free_port  # noqa: E402

USER = {
    "id": "01HZX0000000000000000000AA",
    "number": 1,
    "name": "bench",
    "role": "user",
    "profile": {},
    "instruction_recording": False,
    "created_at": "2026-01-01T00:00:00Z",
}


def stand_in_core() -> Starlette:
    """The core's two routes an upload meets: `/v1/me` (the key checked) and the upload."""

    async def me(_request: Request) -> JSONResponse:
        return JSONResponse(USER)

    async def upload(request: Request) -> JSONResponse:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
        return JSONResponse({"received": received}, status_code=202)

    return Starlette(
        routes=[Route("/v1/me", me), Route("/v1/turns/upload", upload, methods=["POST"])]
    )


def high_water_kib() -> int:
    """The process's peak resident memory so far (VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def wait_for(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def measure(mib: int) -> None:
    core_port, web_port = free_port(), free_port()
    core = subprocess.Popen(
        [sys.executable, __file__, "--core", str(core_port)],
        stdout=subprocess.DEVNULL,
    )
    settings = Settings(
        _env_file=None,
        secret_key="bench",
        core={"port": core_port},
        web={"port": web_port},
    )
    config = uvicorn.Config(create_app(settings), port=web_port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory() as scratch:
        big = Path(scratch) / "big.bin"
        with big.open("wb") as file:  # a MiB at a time: the process's high-water mark stays low
            for _ in range(mib):
                file.write(os.urandom(1024 * 1024))
        try:
            wait_for(f"http://127.0.0.1:{core_port}/v1/me")
            wait_for(f"http://127.0.0.1:{web_port}/healthz")
            curl = [
                "/usr/bin/curl",
                "-sS",
                "-H",
                "X-Patchbay-Web: 1",
                "--cookie",
                "patchbay_key=pb",
            ]
            curl += ["-F", 'turn={"text":"hi","channel":"web"}', "-F", f"files=@{big}"]
            curl.append(f"http://127.0.0.1:{web_port}/api/turns/upload")
            tracemalloc.start()
            before = high_water_kib()
            answer = subprocess.run(curl, capture_output=True, check=True, text=True)
            _, peak = tracemalloc.get_traced_memory()
            grown = high_water_kib() - before
        finally:
            tracemalloc.stop()
            server.should_exit = True
            thread.join(10)
            core.terminate()
            core.wait(10)
    print(f"core answered: {answer.stdout}")
    print(
        f"{mib} MiB upload: tracemalloc peak {peak / 2**20:.1f} MiB, VmHWM +{grown / 1024:.1f} MiB"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--core"]:
        uvicorn.run(stand_in_core(), port=int(sys.argv[2]), log_level="warning")
    else:
        measure(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
