"""supervisord for patchbay: its configuration rendered from Settings, and a client for its XML-RPC.

supervisord does the process management (start, restart with backoff, stop with SIGTERM then
SIGKILL, log files); patchbay only tells it what to run and asks it what is running.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from patchbay.config import Settings
from patchbay.supervisor.crashwatch import failed_marker, stopped_marker
from patchbay.supervisor.modules import ModuleSpec

STOP_GRACE_S = 10
START_RETRIES = 3
MAX_SOCKET_PATH = 107  # bytes of a Unix socket's path (sun_path holds 108, with its NUL)
# A module that exits within this many seconds of starting has failed to start: supervisord
# retries it with a growing backoff, then marks it FATAL. It must cover a module's start-up
# (imports, migrations, binding its port), or a module that cannot start loops forever.
START_SECONDS = 8


@dataclass(frozen=True, slots=True)
class ModuleState:
    name: str
    state: str  # supervisord's: RUNNING, STARTING, BACKOFF, STOPPED, EXITED, FATAL, …
    pid: int
    uptime_s: int
    restarts: int
    reason: str  # why it is not running, when it is not


def _escape(value: object) -> str:
    return str(value).replace("%", "%%")


def _command(argv: list[str]) -> str:
    """A command line supervisord splits back into `argv` (shell-style: a path with a space,
    such as macOS's "Application Support", stays one argument)."""
    return shlex.join(argv)


def render(settings: Settings, specs: list[ModuleSpec]) -> str:
    """supervisord.conf for these modules; paths live in the run directory."""
    run = settings.run_dir
    lines = [
        "[unix_http_server]",
        f"file={_escape(run / 'supervisor.sock')}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={_escape(run / 'logs' / 'supervisord.log')}",
        f"pidfile={_escape(run / 'supervisord.pid')}",
        f"childlogdir={_escape(run / 'logs')}",
        "identifier=patchbay",
        "umask=077",  # its logs and pid file, and the modules': the user's alone (its own: 022)
        "silent=true",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
    ]
    for spec in specs:
        command = _command([sys.executable, "-m", "patchbay.cli.main", *spec.args])
        lines += [
            "",
            f"[program:{spec.name}]",
            f"command={_escape(command)}",
            f"priority={spec.priority}",
            "autostart=true",
            "autorestart=false",  # the crash watch restarts it, with backoff
            f"startsecs={START_SECONDS}",
            f"startretries={START_RETRIES}",
            "stopsignal=TERM",
            f"stopwaitsecs={STOP_GRACE_S}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={_escape(log_path(settings, spec.name))}",
            "stdout_logfile_maxbytes=10MB",
            "stdout_logfile_backups=3",
        ]
    watch = _command([sys.executable, "-m", "patchbay.supervisor.crashwatch", str(run)])
    lines += [
        "",
        "[eventlistener:crashwatch]",
        f"command={_escape(watch)}",
        "events=PROCESS_STATE_EXITED",
        "autorestart=true",
        "priority=1",
        f"stderr_logfile={_escape(log_path(settings, 'crashwatch'))}",
        "stderr_logfile_maxbytes=1MB",
    ]
    return "\n".join(lines) + "\n"


def port_taken(spec: ModuleSpec) -> str | None:
    """Why `spec`'s port cannot be had (another program listens there), or None. Asked before
    the start: a module's health check alone would take another program answering there (another
    installation's module, say) for the module."""
    if spec.port is None:
        return None
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            spec.host, spec.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(where)
    except OSError as exc:
        return f"{spec.host}:{spec.port}: {exc.strerror or exc}"
    return None


def log_path(settings: Settings, name: str) -> Path:
    return settings.run_dir / "logs" / f"{name}.log"


class Supervisor:
    """The supervisord of one data directory: start it, ask it, stop it."""

    def __init__(self, settings: Settings, specs: list[ModuleSpec]) -> None:
        self.settings = settings
        self.specs = {spec.name: spec for spec in specs}
        self.conf = settings.run_dir / "supervisord.conf"
        self.socket = settings.run_dir / "supervisor.sock"
        self.pidfile = settings.run_dir / "supervisord.pid"

    def launch(self, *, foreground: bool) -> subprocess.Popen[bytes]:
        """Write the configuration and start supervisord (as a child, or as a daemon); raises
        `RuntimeError` saying why in one line when it cannot start."""
        if len(os.fsencode(self.socket)) > MAX_SOCKET_PATH:
            raise RuntimeError(
                f"the path of supervisord's socket, {self.socket}, is over {MAX_SOCKET_PATH} bytes"
                " (a Unix limit): choose a data directory with a shorter path"
            )
        (self.settings.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.settings.run_dir / "stopped", ignore_errors=True)  # a new start
        self.conf.write_text(render(self.settings, list(self.specs.values())))
        command = [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)]
        if foreground:
            command.append("-n")
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 15
        while not self.running():
            code = process.poll()  # a daemon's first process exits 0 once it has forked
            if (code is not None and (foreground or code != 0)) or time.monotonic() > deadline:
                raise RuntimeError(f"supervisord did not start; see {self.supervisord_log}")
            time.sleep(0.05)
        return process

    @property
    def supervisord_log(self) -> Path:
        return self.settings.run_dir / "logs" / "supervisord.log"

    def rpc(self) -> Any:
        transport = SupervisorTransport(None, None, serverurl=f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def running(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(self.rpc().getState()["statename"] == "RUNNING")
        except (OSError, xmlrpc.client.Fault):
            return False

    def states(self) -> list[ModuleState]:
        spawns = self._spawn_counts()
        states = []
        for info in self.rpc().getAllProcessInfo():
            name = info["name"]
            if name not in self.specs:
                continue  # the crash watch, not a module
            running = info["statename"] == "RUNNING"
            failed = failed_marker(self.settings.run_dir, name)
            state, reason = info["statename"], "" if running else self.reason(name, info)
            if not running and failed.exists():
                state, reason = "FAILED", failed.read_text().strip()
            elif not running and stopped_marker(self.settings.run_dir, name).exists():
                state, reason = "STOPPED", "stopped by `patchbay stop`"
            states.append(
                ModuleState(
                    name=name,
                    state=state,
                    pid=info["pid"],
                    uptime_s=info["now"] - info["start"] if running else 0,
                    restarts=max(0, spawns.get(name, 0) - 1),
                    reason=reason,
                )
            )
        return states

    def forget_failure(self, name: str) -> None:
        """Let a module that was left stopped for crashing, or stopped by hand, be started
        again."""
        failed_marker(self.settings.run_dir, name).unlink(missing_ok=True)
        self.forget_stop(name)

    def forget_stop(self, name: str) -> None:
        """Undo `keep_stopped` (the module may be started again after a crash)."""
        stopped_marker(self.settings.run_dir, name).unlink(missing_ok=True)

    def keep_stopped(self, name: str) -> None:
        """A module about to be stopped by hand: the crash watch must not start it again (it
        may have crashed just before, and be waiting to be started)."""
        marker = stopped_marker(self.settings.run_dir, name)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()

    def reason(self, name: str, info: dict[str, Any] | None = None) -> str:
        """One line on why a module is not running: its log's last word, else supervisord's."""
        path = log_path(self.settings, name)
        if path.exists():
            lines = [
                line.strip()
                for line in path.read_text(errors="replace").splitlines()[-200:]
                if line.strip() and not line.startswith((" ", "Traceback"))
            ]
            if lines:
                return lines[-1]
        if info and info.get("spawnerr"):
            return str(info["spawnerr"])
        return info["statename"].lower() if info else "unknown"

    def _spawn_counts(self) -> dict[str, int]:
        """How often supervisord spawned each module since it started (its own log says)."""
        counts: dict[str, int] = {}
        if not self.supervisord_log.exists():
            return counts
        for line in self.supervisord_log.read_text(errors="replace").splitlines():
            if "spawned: '" in line:
                name = line.split("spawned: '", 1)[1].split("'", 1)[0]
                counts[name] = counts.get(name, 0) + 1
            elif "supervisord started with pid" in line:
                counts.clear()
        return counts

    def healthy(self, name: str) -> bool:
        spec = self.specs[name]
        if spec.port is None:
            return True  # nothing to ask over HTTP
        connection = HTTPConnection(spec.host, spec.port, timeout=1)
        try:
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def wait_ready(
        self, timeout_s: float, *, stop: Callable[[], bool] = lambda: False
    ) -> ModuleState | None:
        """Wait until every module answers its health check; returns the first that failed
        (None as soon as `stop()`)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not stop():
            states = self.states()
            for state in states:
                if state.state in ("FATAL", "STOPPED", "FAILED"):
                    return state
            if all(self._ready(state) for state in states):
                return None
            time.sleep(0.2)
        if stop():
            return None
        slow = [state for state in self.states() if not self._ready(state)]
        return slow[0] if slow else None

    def _ready(self, state: ModuleState) -> bool:
        if self.specs[state.name].port is None:  # ready once it stayed up past `startsecs`
            return state.state == "RUNNING"
        return state.state in ("STARTING", "RUNNING") and self.healthy(state.name)

    def shutdown(
        self, process: subprocess.Popen[bytes] | None = None, timeout_s: float = STOP_GRACE_S + 10
    ) -> None:
        """Stop every module (SIGTERM, grace period, SIGKILL) and supervisord itself.

        Pass `process` when supervisord is this process's child, so it is reaped, not awaited.
        """
        pid = process.pid if process is not None else self._pid()
        with contextlib.suppress(OSError, xmlrpc.client.Fault):
            self.rpc().shutdown()
        deadline = time.monotonic() + timeout_s
        while pid and _alive(pid, process) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid and _alive(pid, process):
            os.killpg(pid, signal.SIGKILL)
            if process is not None:
                process.wait()

    def _pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None


def _alive(pid: int, process: subprocess.Popen[bytes] | None) -> bool:
    if process is not None:
        return process.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
