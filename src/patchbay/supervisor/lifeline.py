"""A module under supervisord ends when supervisord does.

supervisord stops its modules when it is stopped, but not when it is killed (SIGKILL, the OOM
killer): they would run on, orphans holding their ports, and the next `patchbay up` could not
start. On Linux a module asks the kernel for a SIGTERM when its parent ends, which it takes as a
stop.
"""

from __future__ import annotations

import signal
from pathlib import Path

from patchbay.parent import end_with_parent


def end_with_supervisord(run_dir: Path) -> None:
    """If this process is a module of the supervisord of `run_dir`, have a SIGTERM sent to it
    when that supervisord ends (at once, if it ended already)."""
    try:
        supervisord = int((run_dir / "supervisord.pid").read_text())
    except (OSError, ValueError):
        return
    end_with_parent(supervisord, signal.SIGTERM)  # not a module (or another data dir's): nothing
