"""A module under supervisord ends when supervisord does.

supervisord stops its modules when it is stopped, but not when it is killed (SIGKILL, the OOM
killer): they would run on, orphans holding their ports, and the next `patchbay up` could not
start. On Linux a module asks the kernel for a SIGTERM when its parent ends, which it takes as a
stop.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def end_with_supervisord(run_dir: Path) -> None:
    """If this process is a module of the supervisord of `run_dir`, have a SIGTERM sent to it
    when that supervisord ends (at once, if it ended already)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        supervisord = int((run_dir / "supervisord.pid").read_text())
    except (OSError, ValueError):
        return
    if os.getppid() != supervisord:  # not a module (or another data directory's)
        return
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        return
    if os.getppid() != supervisord:  # it ended before the kernel was asked
        os.kill(os.getpid(), signal.SIGTERM)
