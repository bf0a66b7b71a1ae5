"""A process that must not outlive its parent asks Linux to signal it when the parent ends."""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def end_with_parent(parent: int, signum: int) -> None:
    """Have `signum` sent to this process when its parent, `parent`, ends (at once, if it ended
    already). Nothing elsewhere than Linux, or when this process's parent is another."""
    if not sys.platform.startswith("linux") or os.getppid() != parent:
        return
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum) != 0:
        return
    if os.getppid() != parent:  # it ended before the kernel was asked
        os.kill(os.getpid(), signum)
