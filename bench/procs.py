"""Subprocess handling for the gateway benchmark: free ports, servers, readiness, CPU use.

Every server is started in a new session (its own process group) with stdout and stderr
going to a log file, and is stopped by signalling the whole group: SIGTERM, then SIGKILL
after a grace period, so no worker or child is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine have spent busy since boot (from /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:]
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait
    busy = sum(int(value) for index, value in enumerate(fields[:8]) if index not in (3, 4))
    return busy / _CLK_TCK


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """A server started as its own process group, logging to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Start ``argv`` now."""
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        self.pgid = self.popen.pid

    def alive(self) -> bool:
        """Whether the main process is still running."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the process's combined stdout and stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """User plus system CPU seconds used so far by the live processes the server started:
        its process group and every descendant (supervisord gives each module a group of its
        own, so the group alone would miss patchbay's modules)."""
        stats: dict[int, list[str]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            # After the name: [1] ppid, [2] pgrp, [11] utime, [12] stime (man 5 proc, field 3 on).
            stats[int(entry.name)] = stat[stat.rfind(")") + 2 :].split()
        ours = {pid for pid, fields in stats.items() if int(fields[2]) == self.pgid}
        grew = True
        while grew:
            found = {pid for pid, fields in stats.items() if int(fields[1]) in ours} - ours
            ours |= found
            grew = bool(found)
        total = sum(int(stats[pid][11]) + int(stats[pid][12]) for pid in ours)
        return total / _CLK_TCK

    def _signal_group(self, sig: signal.Signals) -> bool:
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            return False
        return True

    def _group_alive(self) -> bool:
        """Whether any process of the group is still running (zombies do not count)."""
        self.popen.poll()  # reap the main process if it has exited
        return any(
            _pgrp_of(entry.name) == self.pgid
            for entry in os.scandir("/proc")
            if entry.name.isdigit()
        )

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the group, SIGKILL it after ``grace_s``, and reap the main process."""
        if self._signal_group(signal.SIGTERM):
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and self._group_alive():
                time.sleep(0.05)
            if self._group_alive():
                self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


def _pgrp_of(pid: str) -> int | None:
    try:
        stat = Path("/proc", pid, "stat").read_text()
    except OSError:
        return None
    state_and_rest = stat[stat.rfind(")") + 2 :].split()
    if state_and_rest[0] == "Z":
        return None
    return int(state_and_rest[2])


async def wait_ready(
    urls: Sequence[str],
    proc: ServerProcess,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
) -> str | None:
    """Poll until every URL answers 200; return None when ready, else why not."""
    deadline = time.monotonic() + timeout_s
    pending = list(urls)
    request_timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=request_timeout) as session:
        while pending:
            if not proc.alive():
                return f"{proc.name} exited with code {proc.popen.returncode} before it was ready"
            if time.monotonic() > deadline:
                return f"{proc.name} not ready after {timeout_s:.0f} s (waiting for {pending[0]})"
            try:
                async with session.get(pending[0], headers=dict(headers or {})) as resp:
                    await resp.read()
                    if resp.status == 200:
                        pending.pop(0)
                        continue
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.2)
    return None


def command_cpu_seconds(command: str) -> float:
    """User plus system CPU seconds used so far by the live processes named ``command``.

    For servers the benchmark does not start, such as a local RabbitMQ (``beam.smp``).
    """
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        if stat[stat.find("(") + 1 : stat.rfind(")")] != command:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / _CLK_TCK
