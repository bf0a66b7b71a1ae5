"""The restart policy supervisord lacks, as one of its event listeners.

supervisord restarts a module that exits at once and backs off only while it is starting. This
listener hears every exit instead: it starts the module again after a growing delay (1 s, 2 s,
4 s, … up to 30 s) and, once a module has crashed `CRASH_LIMIT` times within `WINDOW_S`, leaves
it stopped and writes why to `<run>/failed/<name>`, which `patchbay ps` shows; the rest go on.
supervisord still does the process management; this only decides when to ask it to start.

Run by supervisord as `python -m patchbay.supervisor.crashwatch RUN_DIR`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import xmlrpc.client
from collections import defaultdict, deque
from pathlib import Path
from typing import Any, TextIO

from supervisor import childutils
from supervisor.xmlrpc import SupervisorTransport

logger = logging.getLogger("patchbay.crashwatch")

CRASH_LIMIT = 5
WINDOW_S = 120.0
MAX_DELAY_S = 30.0


def failed_marker(run_dir: Path, name: str) -> Path:
    return run_dir / "failed" / name


def stopped_marker(run_dir: Path, name: str) -> Path:
    """Written by `patchbay stop NAME`: a module stopped by hand is not started again here."""
    return run_dir / "stopped" / name


def rpc(run_dir: Path) -> Any:
    """A fresh XML-RPC proxy to this run's supervisord (one per call: timers run in threads)."""
    transport = SupervisorTransport(None, None, serverurl=f"unix://{run_dir / 'supervisor.sock'}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


class CrashWatch:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.crashes: dict[str, deque[float]] = defaultdict(deque)

    def exited(self, name: str, now: float) -> float | None:
        """Note a crash; the delay before starting it again, or None when it has failed."""
        recent = self.crashes[name]
        recent.append(now)
        while recent and recent[0] < now - WINDOW_S:
            recent.popleft()
        if len(recent) >= CRASH_LIMIT:
            marker = failed_marker(self.run_dir, name)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(
                f"crashed {len(recent)} times within {WINDOW_S:.0f} s; left stopped: see "
                f"`patchbay logs {name}`, then `patchbay start {name}`\n"
            )
            recent.clear()
            return None
        return min(2.0 ** (len(recent) - 1), MAX_DELAY_S)

    def start_later(self, name: str, delay_s: float) -> None:
        timer = threading.Timer(delay_s, self._start, args=(name,))
        timer.daemon = True
        timer.start()

    def _start(self, name: str) -> None:
        if stopped_marker(self.run_dir, name).exists():  # stopped by hand while it waited
            logger.info("%s was stopped meanwhile; left stopped", name)
            return
        try:
            rpc(self.run_dir).supervisor.startProcess(name, False)
        except Exception as exc:  # noqa: BLE001 - started meanwhile, or supervisord stopping
            logger.warning("could not start %s: %s", name, exc)


def serve(run_dir: Path, stdin: TextIO, stdout: TextIO) -> None:
    watch = CrashWatch(run_dir)
    while True:
        headers, payload = childutils.listener.wait(stdin, stdout)
        if headers.get("eventname") == "PROCESS_STATE_EXITED":
            process, _data = childutils.eventdata(payload + "\n")
            name = process["processname"]
            delay = watch.exited(name, time.monotonic())
            if delay is None:
                logger.error("%s keeps crashing; left stopped", name)
            else:
                logger.warning("%s exited; starting it in %.0f s", name, delay)
                watch.start_later(name, delay)
        childutils.listener.ok(stdout)


if __name__ == "__main__":
    # stdout is supervisord's event protocol: everything said goes to stderr
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    serve(Path(sys.argv[1]), sys.stdin, sys.stdout)
