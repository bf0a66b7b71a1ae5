"""LiteLLM proxy as a comparison target: its own venv, a config file, a command line.

The proxy is installed once into ``bench/.venv-litellm`` (reused when a previous install
finished) and runs with one worker, no database and no callbacks, in offline mode so that
it never fetches its model cost map or anything else from the network.

``litellm[proxy]==1.109.1`` is tried first. On this workplace's registry it does not
resolve (it, and every release from 1.106.3 on, requires ``certifi>=2026.10.19`` and
companion packages the registry does not have), so the newest release that does resolve
is tried next; the report says which version was measured.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

BENCH_DIR = Path(__file__).resolve().parent
VENV = BENCH_DIR / ".venv-litellm"
VERSIONS = ("1.109.1", "1.106.2", "1.106.0")  # first that installs wins
MASTER_KEY = "sk-litellm-master"
INSTALL_TIMEOUT_S = 1200.0
_MARKER = VENV / ".bench-installed"
LOG = VENV / "install.log"


def installed_version() -> str | None:
    """The version a finished install left in the venv, None when there is none."""
    if _MARKER.is_file() and (VENV / "bin" / "litellm").is_file():
        return _MARKER.read_text().strip() or None
    return None


async def _run_logged(
    argv: list[str], log_path: Path, progress: Progress, task: TaskID, timeout_s: float
) -> int:
    """Run ``argv``, appending its output to ``log_path`` and its last line to the task."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    if proc.stdout is None:
        raise RuntimeError("no pipe to read the installer's output from")
    deadline = time.monotonic() + timeout_s
    with log_path.open("ab") as log:
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), timeout=max(remaining, 0.1))
            except TimeoutError:
                proc.kill()
                await proc.wait()
                return -1
            if not line:
                break
            log.write(line)
            text = line.decode(errors="replace").strip()
            if text and not text.startswith("WARNING"):
                progress.update(task, description=f"LiteLLM install: {text[:90]}")
    return await proc.wait()


def _last_error(log_path: Path) -> str:
    """The last ``ERROR:`` line pip wrote, shortened."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("ERROR:") and "Ignored" not in line]
    return errors[-1][:160] if errors else ""


async def ensure_installed(console: Console) -> tuple[str | None, str]:
    """Install the proxy unless a finished install exists: (version or None, note)."""
    log_path = LOG
    version = installed_version()
    if version is not None:
        return version, f"reused {VENV.relative_to(BENCH_DIR.parent)} (litellm {version})"
    python3 = shutil.which("python3") or sys.executable
    VENV.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"LiteLLM install: creating {VENV.name}")
        deadline = time.monotonic() + INSTALL_TIMEOUT_S
        if not (VENV / "bin" / "python").is_file():
            code = await _run_logged(
                [python3, "-m", "venv", str(VENV)], log_path, progress, task, 120.0
            )
            if code != 0:
                return None, f"python3 -m venv failed (code {code}); see {log_path}"
        pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off"]
        failures: list[str] = []
        for version in VERSIONS:
            spec = f"litellm[proxy]=={version}"
            progress.update(task, description=f"LiteLLM install: {spec}")
            remaining = deadline - time.monotonic()
            code = await _run_logged([*pip, spec], log_path, progress, task, remaining)
            if code == 0 and (VENV / "bin" / "litellm").is_file():
                break
            why = "timed out" if code == -1 else _last_error(log_path) or f"exit code {code}"
            failures.append(f"{spec}: {why}")
            if code == -1:
                return None, f"{'; '.join(failures)}; see {log_path}"
        else:
            return None, f"{'; '.join(failures)}; see {log_path}"
    _MARKER.write_text(version + "\n")
    where = VENV.relative_to(BENCH_DIR.parent)
    tried = f" ({'; '.join(failures)})" if failures else ""
    return version, f"installed litellm[proxy]=={version} into {where}{tried}"


def write_config(directory: Path, mock_port: int) -> Path:
    """Write the proxy config (JSON, which is also YAML) and return its path."""
    config = {
        "model_list": [
            {
                "model_name": "mock-gpt",
                "litellm_params": {
                    "model": "openai/gpt-mock",
                    "api_base": f"http://127.0.0.1:{mock_port}/v1",
                    "api_key": "sk-mock",
                },
            }
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }
    path = directory / "litellm-config.yaml"
    path.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    return path


def command(config: Path, port: int) -> list[str]:
    """The proxy's command line: one worker, loopback only."""
    litellm = str(VENV / "bin" / "litellm")
    return [litellm, "--config", str(config), "--port", str(port), "--host", "127.0.0.1"]


def environment() -> dict[str, str]:
    """The proxy's environment: quiet, offline, no database."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "DIRECT_URL", "REDIS_HOST", "REDIS_URL"}
    }
    env.update(
        {
            "LITELLM_LOG": "ERROR",
            "LITELLM_OFFLINE_MODE": "true",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    env.pop("VIRTUAL_ENV", None)
    return env
