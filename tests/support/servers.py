"""Real uvicorn servers on loopback, each in its own thread (httpx's `serve_in_thread` pattern)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


class ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the main thread owns signals
        pass


@contextmanager
def serve_in_thread(
    app: Any, port: int, *, host: str = "127.0.0.1", timeout_s: float = 30.0
) -> Iterator[str]:
    """Serve `app` on `host`:`port` until the block ends; yields the base URL."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        loop="asyncio",
        lifespan="on",
        proxy_headers=False,  # as patchbay serves its modules: X-Forwarded-For is the app's to read
    )
    server = ThreadServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server on port {port} did not start")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server on port {port} took over {timeout_s}s to start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
