"""Gateway benchmark: patchbay and LiteLLM's proxy against the same fast mock upstream.

One run starts the mock upstream (``bench/mock_upstream.py``), measures it directly as the
baseline, then starts patchbay on embedded defaults in a temporary data dir, registers the
mock on its core and measures it, then (when it can be installed, into
``bench/.venv-litellm``) measures LiteLLM's proxy, one worker, no database. Each gateway runs
alone while it is measured and is stopped (its whole process group) afterwards.

Scenarios per target: non-streaming from one sequential client (latency), non-streaming over
64 connections (throughput), streaming 64 tokens from 32 clients (throughput, time to first
token). The load client is aiohttp on uvloop inside this process: on a 2-core machine a
separate client process would take the same core, and the report records the client's and
the target's CPU use so a client-bound figure (the mock's, typically) can be recognised.

The added latency at one client is measured once more per gateway: the same client takes turns
between it and the mock, ten calls in a row to each, so both p50s come from the same minutes.
These machines change speed from one minute to the next, and the sequential runs of the mock and
of a gateway are minutes apart.

Usage: ``python bench/gateway.py [--quick] [--out bench/results/gateway.json] [--no-litellm]
[--targets mock,patchbay,litellm]``. Exits 0 when it ran, whether or not the targets were
met; non-zero when something could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import uvloop
from rich.console import Console
from rich.markup import escape

sys.path.insert(0, str(Path(__file__).resolve().parent))

import litellm_setup
import load
import report as reporting
from procs import ServerProcess, free_port, machine_busy_seconds, wait_ready

T = TypeVar("T")
BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
ALL_TARGETS = ("mock", "patchbay", "litellm")
READY_TIMEOUT_S = 60.0
LITELLM_READY_TIMEOUT_S = 180.0
PAUSE_S = 1.0

console = Console()
if not console.is_terminal:  # piped or redirected: wide enough for the table
    console = Console(width=130)


class BenchError(Exception):
    """Something the benchmark needs could not run."""


@dataclass(frozen=True)
class Settings:
    """What one run does."""

    quick: bool
    targets: tuple[str, ...]
    out: Path
    seq_requests: int
    warmup: int
    duration_s: float
    connections: int = 64
    stream_clients: int = 32


def say(message: str) -> None:
    """The CLI's progress output (plain text, no markup)."""
    console.print(escape(message))


def parse_args(argv: list[str] | None) -> Settings:
    """Settings from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="60 requests and 3 s runs")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "gateway.json")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM")
    parser.add_argument(
        "--targets", default=",".join(ALL_TARGETS), help="comma-separated subset of %(default)s"
    )
    parser.add_argument("--requests", type=int, help="sequential requests (default 300/60)")
    parser.add_argument("--duration", type=float, help="seconds per concurrent run (10/3)")
    args = parser.parse_args(argv)
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    unknown = set(targets) - set(ALL_TARGETS)
    if unknown or not targets:
        parser.error(f"--targets: unknown {sorted(unknown)}; choose from {ALL_TARGETS}")
    if args.no_litellm:
        targets = tuple(t for t in targets if t != "litellm")
    default_requests, default_duration = (60, 3.0) if args.quick else (300, 10.0)
    return Settings(
        quick=args.quick,
        targets=targets,
        out=args.out,
        seq_requests=max(1, min(args.requests or default_requests, 100_000)),
        warmup=20,
        duration_s=max(0.5, min(args.duration or default_duration, 300.0)),
    )


async def measure(
    target: load.Target, proc: ServerProcess, upstream: ServerProcess, settings: Settings
) -> dict[str, dict[str, Any]]:
    """Run the three scenarios on one target, one after another."""
    results: dict[str, dict[str, Any]] = {}
    probes: dict[str, load.CpuProbe] = {"target": proc.cpu_seconds}
    if upstream is not proc:
        probes["upstream"] = upstream.cpu_seconds
    probes[load.MACHINE] = machine_busy_seconds
    runs = (
        ("nonstream_seq_1", f"{settings.seq_requests} sequential requests"),
        ("nonstream_conc_64", f"{settings.connections} connections, {settings.duration_s:g} s"),
        (
            "stream_conc_32",
            f"{settings.stream_clients} streaming clients, {settings.duration_s:g} s",
        ),
    )
    for scenario, what in runs:
        with console.status(f"{target.name}: {what}"):
            if scenario == "nonstream_seq_1":
                result = await load.sequential(
                    target, settings.seq_requests, settings.warmup, probes
                )
            elif scenario == "nonstream_conc_64":
                result = await load.concurrent(
                    target, settings.connections, settings.duration_s, probes
                )
            else:
                result = await load.streaming(
                    target, settings.stream_clients, settings.duration_s, probes
                )
            await asyncio.sleep(PAUSE_S)
        say(
            f"  {target.name:<8} {reporting.SCENARIOS[scenario]:<38} {result.rps:>9,.0f} req/s"
            f"  p50 {reporting.fmt_ms(result.p50_ms):>6} ms  errors {result.errors}"
        )
        results[scenario] = result.summary()
    if not proc.alive():
        raise BenchError(f"{proc.name} died during the run:\n{proc.log_tail()}")
    return results


async def measure_paired(
    target: load.Target, mock: load.Target, settings: Settings
) -> dict[str, Any]:
    """The 1-client latency once more, the target and the mock taking turns (`load.paired`)."""
    with console.status(
        f"{target.name}: {settings.seq_requests} calls, taking turns with the mock"
    ):
        result = await load.paired(target, mock, settings.seq_requests, settings.warmup)
        await asyncio.sleep(PAUSE_S)
    summary = result.summary()
    say(
        f"  {target.name:<8} {'1 client, taking turns with the mock':<38}"
        f"  p50 {reporting.fmt_ms(summary['p50_ms']):>6} ms"
        f" (mock {reporting.fmt_ms(summary['baseline_p50_ms'])} ms)  errors {result.errors}"
    )
    return summary


@contextlib.contextmanager
def stop_on_error(proc: ServerProcess) -> Iterator[None]:
    """Stop the process group if anything (a failure, Ctrl-C, SIGTERM) interrupts its start."""
    try:
        yield
    except BaseException:
        proc.stop()
        raise


async def start_mock(logs: Path) -> tuple[ServerProcess, int]:
    """Start the mock upstream and wait for it."""
    port = free_port()
    argv = [sys.executable, str(BENCH_DIR / "mock_upstream.py"), "--port", str(port)]
    proc = ServerProcess("mock upstream", argv, logs / "mock.log")
    with stop_on_error(proc):
        failure = await wait_ready([f"http://127.0.0.1:{port}/v1/models"], proc, 20.0)
        if failure:
            raise BenchError(f"{failure}\n{proc.log_tail()}")
    return proc, port


def patchbay_command() -> Path:
    """The ``patchbay`` console script of this venv."""
    for candidate in (Path(sys.executable).parent / "patchbay", REPO / ".venv/bin/patchbay"):
        if candidate.is_file():
            return candidate
    raise BenchError("no patchbay command in the venv (is the package installed? pip install -e .)")


def _patchbay_logs(proc: ServerProcess, data_dir: Path) -> str:
    """The tail of ``patchbay up``'s output and of each module log under the data dir."""
    parts = [f"--- patchbay up (tail) ---\n{proc.log_tail(30)}"]
    for log in sorted(data_dir.rglob("*.log"))[:4]:
        lines = log.read_text(errors="replace").splitlines()[-30:]
        parts.append(f"--- {log.relative_to(data_dir)} (tail) ---\n" + "\n".join(lines))
    return "\n".join(parts)


async def _register_mock(core: str, admin_key: str, mock_port: int) -> None:
    """Register the mock as provider ``mock`` and model ``mock-gpt`` on patchbay's core."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    registrations = (
        ("providers", {
            "name": "mock", "kind": "openai", "api_base": f"http://127.0.0.1:{mock_port}/v1",
            "api_key": "sk-mock",
        }),
        ("models", {"name": "mock-gpt", "provider": "mock", "upstream_model": "gpt-mock"}),
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            for path, body in registrations:
                async with session.post(f"{core}/{path}", json=body, headers=headers) as resp:
                    text = await resp.text()
                    if resp.status != 201:
                        raise BenchError(
                            f"POST {core}/{path} answered {resp.status}, not 201: {text[:500]}"
                        )
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise BenchError(f"registering the mock on patchbay failed: {exc!r}") from exc


async def start_patchbay(tmp: Path, mock_port: int) -> tuple[ServerProcess, load.Target]:
    """Start patchbay on embedded defaults, wait for both services, register the mock."""
    admin_key = "pb-bench-" + secrets.token_hex(16)
    core_port, openai_port = free_port(), free_port()
    while openai_port == core_port:
        openai_port = free_port()
    data_dir = tmp / "patchbay-data"
    data_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATCHBAY_")}
    env.update(
        {
            "PATCHBAY_DATA_DIR": str(data_dir),
            "PATCHBAY_ADMIN_KEY": admin_key,
            "PATCHBAY_CORE__PORT": str(core_port),
            "PATCHBAY_OPENAI__PORT": str(openai_port),
            "PATCHBAY_LOCAL_MODEL__ENABLED": "false",
            # The to-text helpers and the WebSocket and web channels take no part in a chat
            # completion: they would only take CPU from the run (LiteLLM runs nothing of the kind
            # either), and the channels would need their default ports free.
            "PATCHBAY_HELPERS__BUILTIN": "[]",
            "PATCHBAY_WS__ENABLED": "false",
            "PATCHBAY_WEB__ENABLED": "false",
            "PATCHBAY_LOG__LEVEL": "WARNING",
            # keep the llm library's own files out of the user's home
            "LLM_USER_PATH": str(data_dir / "llm-user"),
        }
    )
    argv = [str(patchbay_command()), "up"]
    proc = ServerProcess("patchbay", argv, tmp / "patchbay.log", env=env, cwd=tmp)
    with stop_on_error(proc):
        urls = [f"http://127.0.0.1:{openai_port}/healthz", f"http://127.0.0.1:{core_port}/healthz"]
        failure = await wait_ready(urls, proc, READY_TIMEOUT_S)
        if failure:
            raise BenchError(f"{failure}\n{_patchbay_logs(proc, data_dir)}")
        await _register_mock(f"http://127.0.0.1:{core_port}/v1", admin_key, mock_port)
    target = load.Target("patchbay", f"http://127.0.0.1:{openai_port}/v1", admin_key, "mock-gpt")
    return proc, target


async def start_litellm(tmp: Path, mock_port: int) -> tuple[ServerProcess, load.Target]:
    """Start LiteLLM's proxy on the mock and wait for it."""
    port = free_port()
    config = litellm_setup.write_config(tmp, mock_port)
    argv = litellm_setup.command(config, port)
    env = litellm_setup.environment()
    proc = ServerProcess("litellm", argv, tmp / "litellm.log", env=env, cwd=tmp)
    with stop_on_error(proc):
        url = f"http://127.0.0.1:{port}/health/liveliness"
        failure = await wait_ready([url], proc, LITELLM_READY_TIMEOUT_S)
        if failure:
            raise BenchError(f"{failure}\n--- litellm output (tail) ---\n{proc.log_tail()}")
    key = litellm_setup.MASTER_KEY
    return proc, load.Target("litellm", f"http://127.0.0.1:{port}/v1", key, "mock-gpt")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def new_report(settings: Settings) -> reporting.Report:
    """The report skeleton with the run's metadata."""
    return {
        "meta": {
            "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "mode": "quick" if settings.quick else "full",
            "settings": {
                "sequential_requests": settings.seq_requests,
                "warmup_requests": settings.warmup,
                "duration_s": settings.duration_s,
                "connections": settings.connections,
                "stream_clients": settings.stream_clients,
                "stream_tokens": load.STREAM_TOKENS,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            "load_client": (
                "aiohttp on uvloop in the benchmark process, one ClientSession and"
                " TCPConnector(limit=concurrency) per scenario, keep-alive; it shares the"
                " machine's cores with the target. cpu_pct per scenario: % of one core used by"
                " the client, the target, the upstream mock, and others (processes outside the"
                " benchmark, a sign of noise)"
            ),
            "versions": {
                "patchbay": _version("patchbay"),
                "patchbay_git": _git_commit(),
                "aiohttp": _version("aiohttp"),
                "litellm": None,
            },
        },
        "targets": {},
        "derived": {},
    }


@contextlib.contextmanager
def stopping(proc: ServerProcess) -> Iterator[ServerProcess]:
    """Stop the process group on the way out, whatever happens."""
    try:
        yield proc
    finally:
        proc.stop()


async def run(settings: Settings) -> int:
    """The whole benchmark; returns the exit code."""
    report = new_report(settings)
    failed = False
    with tempfile.TemporaryDirectory(prefix="patchbay-bench-") as tmp_name:
        tmp = Path(tmp_name)
        litellm_note: str | None = None
        if "litellm" in settings.targets:
            version, litellm_note = await litellm_setup.ensure_installed(console)
            report["meta"]["versions"]["litellm"] = version
            say(f"LiteLLM: {litellm_note}")
            if version is None:
                report["targets"]["litellm"] = {"status": "skipped", "note": litellm_note}
        mock_proc, mock_port = await start_mock(tmp)
        with stopping(mock_proc):
            mock_url = f"http://127.0.0.1:{mock_port}/v1"
            say(f"mock upstream on {mock_url}")
            mock = load.Target("mock", mock_url, "sk-mock", "gpt-mock")
            for name in settings.targets:
                if report["targets"].get(name, {}).get("status") == "skipped":
                    continue
                try:
                    if name == "mock":
                        scenarios = await measure(mock, mock_proc, mock_proc, settings)
                        note = "the mock upstream called directly (baseline)"
                    else:
                        starter = start_patchbay if name == "patchbay" else start_litellm
                        with console.status(f"starting {name}"):
                            proc, target = await starter(tmp, mock_port)
                        with stopping(proc):
                            say(f"{name} ready on {target.base_url}")
                            scenarios = await measure(target, proc, mock_proc, settings)
                            pairs = await measure_paired(target, mock, settings)
                        note = (litellm_note or "") if name == "litellm" else "embedded defaults"
                except BenchError as exc:
                    failed = True
                    console.print(f"[red]{name}: could not run:[/red]\n{escape(str(exc))}")
                    report["targets"][name] = {"status": "failed", "note": str(exc)[:4000]}
                    continue
                report["targets"][name] = {"status": "ok", "note": note, "scenarios": scenarios}
                if name != "mock":
                    report["targets"][name]["paired_with_mock"] = pairs
    for name in ALL_TARGETS:
        if name not in settings.targets:
            report["targets"][name] = {"status": "skipped", "note": "not requested"}
    report["targets"] = {name: report["targets"][name] for name in ALL_TARGETS}
    report["derived"] = reporting.derive(report)
    reporting.print_report(console, report)
    reporting.write_json(settings.out, report)
    png = settings.out.with_name("gateway.png")
    plot_note = reporting.plot(png, report)
    say(f"wrote {settings.out}" + (f" ({plot_note})" if plot_note else f" and {png}"))
    return 1 if failed else 0


def run_bench(run: Callable[[T], Awaitable[int]], settings: T) -> int:
    """Run a benchmark's `run(settings)` on uvloop and return its exit code: SIGTERM cancels it,
    a `BenchError` is said in one line (1), an interruption is 130."""

    async def guarded() -> int:
        task = asyncio.current_task()
        if task is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await run(settings)
        except BenchError as exc:
            console.print(f"[red]could not run:[/red] {escape(str(exc))}")
            return 1

    try:
        return uvloop.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.print("[red]interrupted[/red]")
        return 130


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    return run_bench(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
