"""`patchbay up -d`, `ps`, `stop`, `start`, `restart`, `logs`, `down`: modules under supervisord."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_KEY
from tests.support.up import PATCHBAY, up_env

pytestmark = pytest.mark.integration


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PATCHBAY, *args], env=env, capture_output=True, text=True, timeout=90)


def rows(env: dict[str, str]) -> dict[str, list[str]]:
    """`patchbay ps` as {module: [state, pid, uptime, restarts, …]}."""
    out = run(env, "ps").stdout
    table = {}
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if len(cells) >= 5 and cells[0] in ("core", "openai", "ws"):
            table[cells[0]] = cells[1:]
    return table


def wait_for(check: Callable[[], bool], timeout_s: float = 40) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """With a space in its path, as macOS's own has ("Application Support"; kept short here: the
    path of supervisord's socket in it may be 107 bytes at most)."""
    return tmp_path / "a b"


@pytest.fixture
def env(data_dir: Path) -> Iterator[dict[str, str]]:
    env = up_env(
        data_dir,
        PATCHBAY_LOCAL_MODEL__ENABLED="false",
        PATCHBAY_ADMIN_KEY=ADMIN_KEY,
        PATCHBAY_STATUS__HEARTBEAT_INTERVAL_S="0.3",
        PATCHBAY_STATUS__DOWN_AFTER_S="1.0",
        PATCHBAY_LOG__LEVEL="INFO",
    )
    try:
        yield env
    finally:
        run(env, "down")
        pidfile = data_dir / "run" / "supervisord.pid"
        if pidfile.exists():  # `down` failed: leave nothing behind all the same
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pidfile.read_text()), signal.SIGKILL)


@pytest.mark.timeout(240)
def test_detached_modules_are_managed_from_the_command_line(
    env: dict[str, str], data_dir: Path
) -> None:
    notes = data_dir / "notes.txt"  # made by an earlier version, under a umask of 022
    data_dir.mkdir()
    notes.touch()
    data_dir.chmod(0o755)
    notes.chmod(0o644)
    started = run(env, "up", "-d")
    assert started.returncode == 0, started.stderr
    assert "patchbay is up" in started.stdout
    assert f"made {data_dir} yours alone (it was 0755)" in " ".join(started.stderr.split())
    # What it keeps (every prompt and answer among it) is its user's alone, whatever the umask.
    kept = [data_dir, *data_dir.rglob("*")]
    assert data_dir / "patchbay.db" in kept
    assert [path for path in kept if path.stat().st_mode & 0o077] == []
    table = rows(env)
    assert set(table) == {"core", "openai", "ws"}
    assert all(
        cells[0] in ("STARTING", "RUNNING") and cells[1].isdigit() for cells in table.values()
    )
    openai_url = f"http://127.0.0.1:{env['PATCHBAY_OPENAI__PORT']}"
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert httpx.get(openai_url + "/v1/models", headers=headers).status_code == 200

    core_url = f"http://127.0.0.1:{env['PATCHBAY_CORE__PORT']}"
    wait_for(lambda: _reported(core_url, "openai") == "up")
    status = run({**env, "PATCHBAY_API_KEY": ADMIN_KEY}, "status")
    assert status.returncode == 0 and "openai" in status.stdout and "up" in status.stdout

    # A module killed outright is shown down, started again, shown up, and the restart counted.
    old_pid = int(table["openai"][1])
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: _reported(core_url, "openai") == "down", timeout_s=10)
    wait_for(lambda: rows(env)["openai"][1] not in ("", str(old_pid)))
    wait_for(lambda: _up(openai_url))
    wait_for(lambda: _reported(core_url, "openai") == "up", timeout_s=10)
    assert rows(env)["openai"][3] == "1"

    # Stopped by hand right after a crash, while the crash watch waits to start it (2 s after
    # a second crash): it stays stopped.
    os.kill(int(rows(env)["openai"][1]), signal.SIGKILL)
    assert run(env, "stop", "openai").returncode == 0
    time.sleep(3)
    assert rows(env)["openai"][0] == "STOPPED"
    assert not _up(openai_url)
    assert run(env, "stop", "openai").returncode == 0  # stopped already: nothing to do
    assert run(env, "restart", "openai").returncode == 0  # stopped: started
    wait_for(lambda: _up(openai_url))
    assert run(env, "start", "openai").returncode == 0  # running already: nothing to do
    assert run(env, "restart", "core").returncode == 0
    wait_for(lambda: _up(core_url))

    logs = run(env, "logs", "core", "-n", "5")
    assert (
        logs.returncode == 0 and "Uvicorn running" in run(env, "logs", "core", "-n", "500").stdout
    )
    assert len(logs.stdout.strip().splitlines()) == 5
    assert run(env, "logs", "nothing").returncode == 2
    assert run(env, "stop", "nothing").returncode == 2
    assert run(env, "up", "-d").returncode == 1  # already up

    pids = [int(cells[1]) for cells in rows(env).values()]
    assert run(env, "down").returncode == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert run(env, "ps").returncode == 1


@pytest.mark.timeout(240)
def test_a_module_that_keeps_crashing_is_left_failed_and_the_rest_run_on(
    env: dict[str, str],
) -> None:
    assert run(env, "up", "-d").returncode == 0
    openai_url = f"http://127.0.0.1:{env['PATCHBAY_OPENAI__PORT']}"
    delays = []
    # Crashes once it runs (a module that dies while starting is supervisord's to retry).

    def running() -> bool:
        return rows(env)["openai"][0] == "RUNNING"

    for _crash in range(4):  # restarted each time, after a growing delay
        wait_for(running, timeout_s=60)
        old = rows(env)["openai"][1]
        killed = time.monotonic()
        os.kill(int(old), signal.SIGKILL)
        wait_for(partial(_respawned, env, old), timeout_s=60)
        delays.append(time.monotonic() - killed)
        wait_for(lambda: _up(openai_url), timeout_s=60)
    assert delays[-1] > delays[0] + 2  # 1 s, 2 s, 4 s, 8 s
    wait_for(running, timeout_s=60)
    os.kill(int(rows(env)["openai"][1]), signal.SIGKILL)  # the fifth crash
    wait_for(lambda: rows(env)["openai"][0] == "FAILED", timeout_s=10)
    assert "crashed 5 times" in run(env, "ps").stdout
    time.sleep(3)
    assert rows(env)["openai"][0] == "FAILED" and rows(env)["core"][0] == "RUNNING"
    assert run(env, "start", "openai").returncode == 0
    wait_for(lambda: _up(openai_url))
    assert rows(env)["openai"][0] == "RUNNING"


def _respawned(env: dict[str, str], old_pid: str) -> bool:
    return rows(env)["openai"][1] not in ("", old_pid)


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _reported(core_url: str, module: str) -> str:
    """The state the core's /v1/status reports for a module."""
    response = httpx.get(
        core_url + "/v1/status", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=2
    )
    return next((m["state"] for m in response.json()["modules"] if m["name"] == module), "")


def _ended(pid: int) -> bool:
    """Gone, or a zombie nobody reaps (a container's first process may not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


@pytest.mark.timeout(240)
def test_modules_end_when_supervisord_is_killed_and_up_starts_again(
    env: dict[str, str], data_dir: Path
) -> None:
    """Killed outright, supervisord cannot stop its modules: they end by themselves, so their
    ports are free for the next `up`."""
    assert run(env, "up", "-d").returncode == 0
    pids = [int(cells[1]) for cells in rows(env).values()]
    assert len(pids) == 3 and not any(_ended(pid) for pid in pids)
    os.kill(int((data_dir / "run" / "supervisord.pid").read_text()), signal.SIGKILL)
    wait_for(lambda: all(_ended(pid) for pid in pids), timeout_s=30)
    again = run(env, "up", "-d")
    assert again.returncode == 0, again.stdout + again.stderr
    assert set(rows(env)) == {"core", "openai", "ws"}
