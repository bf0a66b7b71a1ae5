"""Job-system benchmark: streaming turns through the in-process queue and through RabbitMQ with
1, 2 and 4 worker processes, and the WebSocket channel's memory per idle connection.

Every scenario starts its own ``patchbay core`` (real processes, a temporary data dir, the local
model off) in front of the same fast mock upstream (``bench/mock_upstream.py``, 64 tokens per
answer), registered as the default model through the core API. The baseline runs the jobs in the
core (``MemoryQueue``); the RabbitMQ scenarios add ``PATCHBAY_QUEUE=rabbitmq`` and N ``patchbay
worker`` processes on a queue and exchanges of the run's own, deleted at the end. The load is N
clients (16 by default) each posting a streaming turn (``POST /v1/turns``, SSE) and reading it to
``done``, for a few seconds after a warm-up; every answer is checked against the mock's.

The memory part starts ``patchbay channel ws`` and reads its RSS (``VmRSS``) before and after
opening 1,000 idle connections authenticated with ``?api_key=`` (the ``websockets`` client, in
this process), once with permessage-deflate offered and once without, a fresh channel each time.

Usage: ``python bench/jobs.py [--quick] [--out bench/results/jobs.json] [--workers 1,2,4]
[--amqp-url URL] [--clients 16] [--duration S] [--no-ws]``. Exits 1 when something could not run
(RabbitMQ unreachable, a process that did not start) or a turn failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import os
import resource
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson
import websockets
from aio_pika.exceptions import AMQPError
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jobs_report as reporting
import load
from gateway import BenchError, patchbay_command, run_bench
from mock_upstream import CONTENT
from procs import ServerProcess, command_cpu_seconds, free_port, machine_busy_seconds, wait_ready
from report import fmt_ms, save

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
READY_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 60.0
BROKER_COMMAND = "beam.smp"  # a local RabbitMQ's process, for its CPU use
TURN = orjson.dumps({"text": "Say hello in 64 tokens.", "channel": "bench"})
TERMINAL = ("done", "failed", "cancelled")
WS_WARMUP_CONNECTIONS = 20  # opened and closed first, so one-off allocations are not counted
WS_OPENING_AT_ONCE = 50
WS_SETTLE_S = 2.0

console = Console()
if not console.is_terminal:  # piped or redirected: wide enough for the tables
    console = Console(width=140)


@dataclass(frozen=True)
class Settings:
    """What one run does."""

    quick: bool
    out: Path
    amqp_url: str
    workers: tuple[int, ...]
    clients: int
    duration_s: float
    warmup_s: float
    ws_connections: int
    llm_log: bool
    keep: Path | None


def parse_args(argv: list[str] | None) -> Settings:
    """Settings from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 s per scenario, 200 ws conns")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "jobs.json")
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default %(default)s)")
    parser.add_argument("--amqp-url", default=DEFAULT_AMQP_URL, help="default %(default)s")
    parser.add_argument("--clients", type=int, default=16, help="default %(default)s")
    parser.add_argument("--duration", type=float, help="seconds per scenario (15, quick 3)")
    parser.add_argument("--ws-connections", type=int, help="idle connections (1000, quick 200)")
    parser.add_argument("--no-ws", action="store_true", help="skip the WebSocket memory part")
    parser.add_argument(
        "--no-llm-log", action="store_true", help="PATCHBAY_LLM_LOG__ENABLED=false (default: on)"
    )
    parser.add_argument("--keep", type=Path, help="keep every process's log and data under KEEP")
    args = parser.parse_args(argv)
    try:
        workers = tuple(sorted({int(n) for n in args.workers.split(",") if n.strip()}))
    except ValueError:
        parser.error(f"--workers: comma-separated counts, not {args.workers!r}")
    if any(n < 1 or n > 16 for n in workers):
        parser.error("--workers: each count between 1 and 16")
    duration, warmup, connections = (3.0, 1.0, 200) if args.quick else (15.0, 3.0, 1000)
    return Settings(
        quick=args.quick,
        out=args.out,
        amqp_url=args.amqp_url,
        workers=workers,
        clients=max(1, min(args.clients, 512)),
        duration_s=max(0.5, min(args.duration or duration, 300.0)),
        warmup_s=warmup,
        ws_connections=0 if args.no_ws else max(1, min(args.ws_connections or connections, 10_000)),
        llm_log=not args.no_llm_log,
        keep=args.keep,
    )


# --- processes -----------------------------------------------------------------------------


def read_status(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``), 0 when it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    """How many file descriptors the process holds open."""
    with contextlib.suppress(OSError):
        return len(os.listdir(f"/proc/{pid}/fd"))
    return 0


@dataclass(frozen=True)
class Core:
    """A running ``patchbay core``, and how to reach it."""

    proc: ServerProcess
    url: str
    admin_key: str
    env: dict[str, str]

    def headers(self) -> dict[str, str]:
        """The admin's bearer key."""
        return {"Authorization": f"Bearer {self.admin_key}"}


def core_env(data_dir: Path, settings: Settings, extra: dict[str, str]) -> dict[str, str]:
    """The environment every patchbay process of one scenario shares."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATCHBAY_")}
    env.update(
        {
            "PATCHBAY_DATA_DIR": str(data_dir),
            "PATCHBAY_ADMIN_KEY": "pb-bench-" + secrets.token_hex(16),
            "PATCHBAY_CORE__PORT": str(free_port()),
            "PATCHBAY_LOCAL_MODEL__ENABLED": "false",
            "PATCHBAY_LLM_LOG__ENABLED": "true" if settings.llm_log else "false",
            "PATCHBAY_LOG__LEVEL": "WARNING",
            "LLM_USER_PATH": str(data_dir / "llm-user"),  # the llm library's files stay here too
            **extra,
        }
    )
    return env


def fail_with_log(proc: ServerProcess, why: str) -> BenchError:
    """A BenchError carrying the tail of the process's output."""
    return BenchError(f"{why}\n--- {proc.name} output (tail) ---\n{proc.log_tail()}")


async def start_core(
    stack: contextlib.AsyncExitStack, work: Path, settings: Settings, extra: dict[str, str]
) -> Core:
    """Start ``patchbay core`` in ``work`` and wait for ``/healthz``; stopped by ``stack``."""
    data_dir = work / "data"
    data_dir.mkdir(parents=True)
    env = core_env(data_dir, settings, extra)
    argv = [str(patchbay_command()), "core"]
    proc = ServerProcess("patchbay core", argv, work / "core.log", env=env, cwd=work)
    stack.callback(proc.stop)
    url = f"http://127.0.0.1:{env['PATCHBAY_CORE__PORT']}"
    failure = await wait_ready([f"{url}/healthz"], proc, READY_TIMEOUT_S)
    if failure:
        raise fail_with_log(proc, failure)
    return Core(proc, url, env["PATCHBAY_ADMIN_KEY"], env)


async def register_mock(core: Core, mock_url: str) -> None:
    """Register the mock as provider ``mock`` and default model ``mock-gpt``."""
    registrations = (
        ("providers", {"name": "mock", "kind": "openai", "api_base": f"{mock_url}/v1", "api_key": "sk-mock"}),
        ("models", {"name": "mock-gpt", "provider": "mock", "upstream_model": "gpt-mock", "is_default": True}),
    )  # fmt: skip
    timeout = aiohttp.ClientTimeout(total=15)
    try:
        async with aiohttp.ClientSession(timeout=timeout, headers=core.headers()) as session:
            for path, body in registrations:
                async with session.post(f"{core.url}/v1/{path}", json=body) as resp:
                    if resp.status != 201:
                        text = await resp.text()
                        raise BenchError(f"POST /v1/{path} answered {resp.status}: {text[:300]}")
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise BenchError(f"registering the mock on the core failed: {exc!r}") from exc


async def wait_workers(core: Core, workers: list[ServerProcess]) -> None:
    """Wait until every worker's heartbeat shows it up in ``GET /v1/status``."""
    names = {w.name for w in workers}
    deadline = time.monotonic() + READY_TIMEOUT_S
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout, headers=core.headers()) as session:
        while time.monotonic() < deadline:
            for worker in workers:
                if not worker.alive():
                    raise fail_with_log(worker, f"{worker.name} exited before it was ready")
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                async with session.get(f"{core.url}/v1/status") as resp:
                    modules = (await resp.json()).get("modules", []) if resp.status == 200 else []
                    if names <= {m["name"] for m in modules if m.get("state") == "up"}:
                        return
            await asyncio.sleep(0.3)
    raise fail_with_log(workers[0], f"workers {sorted(names)} not up after {READY_TIMEOUT_S:.0f} s")


async def start_mock(stack: contextlib.AsyncExitStack, tmp: Path) -> tuple[ServerProcess, str]:
    """Start the mock upstream and wait for it; stopped by ``stack``."""
    port = free_port()
    argv = [sys.executable, str(BENCH_DIR / "mock_upstream.py"), "--port", str(port)]
    proc = ServerProcess("mock upstream", argv, tmp / "mock.log")
    stack.callback(proc.stop)
    url = f"http://127.0.0.1:{port}"
    failure = await wait_ready([f"{url}/v1/models"], proc, 20.0)
    if failure:
        raise fail_with_log(proc, failure)
    return proc, url


# --- RabbitMQ ------------------------------------------------------------------------------


async def rabbitmq_version(url: str) -> str:
    """RabbitMQ's version; raises BenchError, saying so plainly, when it cannot be reached."""
    try:
        connection = await aio_pika.connect(url, timeout=5)
    except (OSError, AMQPError, TimeoutError) as exc:
        raise BenchError(
            f"RabbitMQ is not reachable at {url.rpartition('@')[2]} ({type(exc).__name__}: {exc});"
            " start it (`sudo systemctl start rabbitmq-server`) or pass --amqp-url."
            " The RabbitMQ scenarios did not run."
        ) from exc
    transport = connection.transport
    properties = transport.connection.server_properties if transport is not None else {}
    await connection.close()
    version = properties.get("version", "?")
    return version.decode() if isinstance(version, bytes) else str(version)


async def delete_rabbit(url: str, queue: str, prefix: str) -> None:
    """Delete a scenario's job queue and its two exchanges (after every process stopped)."""
    try:
        connection = await aio_pika.connect(url, timeout=10)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(queue)
            for exchange in (f"{prefix}.events", f"{prefix}.control"):
                await channel.exchange_delete(exchange)
    except (OSError, AMQPError, TimeoutError) as exc:
        console.print(f"[yellow]could not delete {queue} and {prefix}.*: {escape(str(exc))}")


# --- streaming turns -----------------------------------------------------------------------


class TurnStream:
    """Parses one turn's SSE events as they arrive: first `running` time, the terminal event."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.ttft: float | None = None
        self.end: dict[str, Any] | None = None
        self.buffer = b""

    def feed(self, piece: bytes) -> None:
        """Take the next bytes of the response."""
        self.buffer += piece
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            event = orjson.loads(line[5:])
            kind = event.get("type")
            if kind == "running" and self.ttft is None:
                self.ttft = time.perf_counter() - self.t0
            elif kind in TERMINAL:
                self.end = event

    def verdict(self) -> tuple[float, float] | str:
        """(TTFT s, total s) for a complete, correct answer; else what was wrong."""
        total = time.perf_counter() - self.t0
        if self.end is None:
            return "the event stream ended before a terminal event"
        if self.end["type"] != "done":
            error = self.end.get("error") or {}
            return f"job {self.end['type']}: {error.get('code')}: {error.get('message')}"
        if self.end.get("content") != CONTENT or self.ttft is None:
            return f"wrong answer: {str(self.end.get('content'))[:80]!r}"
        return self.ttft, total


async def turn_once(session: aiohttp.ClientSession, url: str) -> tuple[float, float] | str:
    """One streaming turn, read to its end: (TTFT s, total s), or why it failed."""
    stream = TurnStream(time.perf_counter())
    try:
        async with session.post(url, data=TURN) as resp:
            if resp.status >= 300:
                return f"HTTP {resp.status}: {(await resp.read())[:200]!r}"
            async for piece in resp.content.iter_any():
                stream.feed(piece)
    except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return stream.verdict()


async def drive(
    session: aiohttp.ClientSession,
    url: str,
    clients: int,
    duration_s: float,
    result: load.Result | None,
) -> None:
    """``clients`` clients posting turns one after another until ``duration_s`` has passed."""
    deadline = time.perf_counter() + duration_s

    async def client() -> None:
        for _ in range(load.MAX_REQUESTS):
            if time.perf_counter() >= deadline:
                return
            outcome = await turn_once(session, url)
            if result is None:
                continue
            if isinstance(outcome, str):
                result.error(outcome)
            else:
                result.ttfts_ms.append(outcome[0] * 1000.0)
                result.latencies_ms.append(outcome[1] * 1000.0)

    limit = duration_s + REQUEST_TIMEOUT_S + 5
    try:  # each turn has its own timeout; this bounds the whole run should one be missed
        async with asyncio.timeout(limit), asyncio.TaskGroup() as tg:
            for _ in range(clients):
                tg.create_task(client())
    except TimeoutError as exc:
        raise BenchError(f"a {duration_s:g} s run did not finish within {limit:g} s") from exc


async def measure_turns(
    core: Core, key: str, settings: Settings, probes: load.Probes, say: Callable[[str], None]
) -> load.Result:
    """Warm up, then measure streaming turns from ``settings.clients`` clients."""
    result = load.Result(key, key, settings.clients)
    headers = {**core.headers(), "Accept": "text/event-stream", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=settings.clients)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    url = f"{core.url}/v1/turns"
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as s:
        say(f"{key}: warm-up, {settings.warmup_s:g} s")
        await drive(s, url, settings.clients, settings.warmup_s, None)
        cpu, start = load.CpuWindow(probes), time.perf_counter()

        async def show() -> None:
            while True:
                elapsed = time.perf_counter() - start
                done = len(result.latencies_ms)
                say(
                    f"{key}: {settings.clients} clients, {elapsed:.0f}/{settings.duration_s:g} s,"
                    f" {done:,} jobs done, {result.errors} failed"
                )
                await asyncio.sleep(0.5)

        showing = asyncio.create_task(show())
        try:
            await drive(s, url, settings.clients, settings.duration_s, result)
        finally:
            showing.cancel()
        result.finish(time.perf_counter() - start, cpu)
    return result


# --- one queue scenario --------------------------------------------------------------------


def probes_for(core: Core, mock: ServerProcess, workers: list[ServerProcess]) -> load.Probes:
    """CPU probes: the core, the workers together, the mock, the local broker, the machine."""
    probes: dict[str, load.CpuProbe] = {"core": core.proc.cpu_seconds}
    if workers:
        probes["workers"] = lambda: sum(w.cpu_seconds() for w in workers)
    probes["mock"] = mock.cpu_seconds
    if command_cpu_seconds(BROKER_COMMAND) > 0:
        probes["broker"] = lambda: command_cpu_seconds(BROKER_COMMAND)
    probes[load.MACHINE] = machine_busy_seconds
    return probes


def rabbit_env(settings: Settings) -> dict[str, str]:
    """A RabbitMQ scenario's settings: its own queue and exchanges."""
    tag = secrets.token_hex(4)
    return {
        "PATCHBAY_QUEUE": "rabbitmq",
        "PATCHBAY_RABBITMQ_URL": settings.amqp_url,
        "PATCHBAY_JOBS__QUEUE_NAME": f"patchbay.jobs.bench-{tag}",
        "PATCHBAY_JOBS__EXCHANGE_PREFIX": f"patchbay-bench-{tag}",
    }


async def run_scenario(
    work: Path,
    key: str,
    workers: int,
    mock: tuple[ServerProcess, str],
    settings: Settings,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Start a core (and ``workers`` workers), load it, stop it all; the report entry."""
    extra = rabbit_env(settings) if workers else {}
    async with contextlib.AsyncExitStack() as stack:
        if workers:  # deleted last, once every process is gone
            queue, prefix = (
                extra["PATCHBAY_JOBS__QUEUE_NAME"],
                extra["PATCHBAY_JOBS__EXCHANGE_PREFIX"],
            )
            stack.push_async_callback(delete_rabbit, settings.amqp_url, queue, prefix)
        say(f"{key}: starting the core")
        core = await start_core(stack, work, settings, extra)
        await register_mock(core, mock[1])
        procs = []
        for n in range(1, workers + 1):
            argv = [str(patchbay_command()), "worker", "--name", f"w{n}"]
            proc = ServerProcess(f"w{n}", argv, work / f"w{n}.log", env=core.env, cwd=work)
            stack.callback(proc.stop)
            procs.append(proc)
        if procs:
            say(f"{key}: starting {workers} worker(s)")
            await wait_workers(core, procs)
        result = await measure_turns(core, key, settings, probes_for(core, mock[0], procs), say)
        rss = {"core": read_status(core.proc.popen.pid, "VmRSS") / 1024}
        if procs:
            rss["workers"] = sum(read_status(p.popen.pid, "VmRSS") for p in procs) / 1024
        dead = [p.name for p in (core.proc, mock[0], *procs) if not p.alive()]
        if dead:
            raise BenchError(f"died during the run: {', '.join(dead)}")
    note = "jobs run in the core" if not workers else f"queue {extra['PATCHBAY_JOBS__QUEUE_NAME']}"
    summary = result.summary()
    summary["rss_mib"] = {name: round(value, 1) for name, value in rss.items()}
    return {"status": "ok", "note": note, "workers": workers, "result": summary}


# --- WebSocket channel memory --------------------------------------------------------------


def ws_available() -> str | None:
    """None when ``patchbay channel ws`` exists, else why not."""
    if importlib.util.find_spec("patchbay.channels.ws.app") is None:
        return "skipped: ws channel not available (no patchbay.channels.ws.app)"
    return None


async def open_idle(url: str, key: str, *, deflate: bool) -> ClientConnection:
    """Open one connection authenticated by ``?api_key=`` and check the channel took the key.

    The channel answers nothing to a key in the query, so the check sends an ``auth`` frame:
    an authenticated connection answers that it is already authenticated; a refused one closes.
    """
    ws = await connect(
        f"{url}?api_key={key}",
        compression="deflate" if deflate else None,
        ping_interval=None,  # idle: no traffic from this side (the server's pings are answered)
        open_timeout=30,
        max_queue=4,
    )
    try:
        await ws.send(orjson.dumps({"type": "auth", "api_key": key}).decode())
        answer = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
    except BaseException:
        await ws.close()
        raise
    if answer.get("type") == "resp_auth" or "already authenticated" in str(answer.get("message")):
        return ws
    await ws.close()
    raise BenchError(f"the channel did not take the key: {answer}")


async def open_many(
    url: str, key: str, count: int, *, deflate: bool
) -> tuple[list[ClientConnection], list[str]]:
    """Open ``count`` idle connections, ``WS_OPENING_AT_ONCE`` at a time; and the failures."""
    gate = asyncio.Semaphore(WS_OPENING_AT_ONCE)

    async def one() -> ClientConnection | str:
        async with gate:
            try:
                return await open_idle(url, key, deflate=deflate)
            except (OSError, TimeoutError, BenchError, websockets.WebSocketException) as exc:
                return f"{type(exc).__name__}: {exc}"

    outcomes = await asyncio.gather(*(one() for _ in range(count)))
    opened = [o for o in outcomes if not isinstance(o, str)]
    return opened, [o for o in outcomes if isinstance(o, str)]


async def close_all(connections: list[ClientConnection]) -> None:
    """Close connections, ``WS_OPENING_AT_ONCE`` at a time."""
    gate = asyncio.Semaphore(WS_OPENING_AT_ONCE)

    async def one(ws: ClientConnection) -> None:
        async with gate:
            await ws.close()

    await asyncio.gather(*(one(ws) for ws in connections), return_exceptions=True)


def raise_fd_limit(needed: int) -> None:
    """Let this process (and the channel, which inherits it) hold ``needed`` descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise BenchError(f"the open-files limit is {hard}; {needed} are needed (ulimit -n)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def measure_ws_variant(
    work: Path, core: Core, settings: Settings, *, deflate: bool, say: Callable[[str], None]
) -> dict[str, Any]:
    """Start a fresh channel, open and close the idle connections, read its RSS around them."""
    port = free_port()
    env = {**core.env, "PATCHBAY_WS__PORT": str(port)}
    argv = [str(patchbay_command()), "channel", "ws"]
    variant = "deflate" if deflate else "plain"
    proc = ServerProcess(f"ws channel ({variant})", argv, work / f"ws-{variant}.log", env, work)
    try:
        failure = await wait_ready([f"http://127.0.0.1:{port}/healthz"], proc, READY_TIMEOUT_S)
        if failure:
            raise fail_with_log(proc, failure)
        url, pid, count = f"ws://127.0.0.1:{port}/ws/", proc.popen.pid, settings.ws_connections
        warm, failures = await open_many(
            url, core.admin_key, WS_WARMUP_CONNECTIONS, deflate=deflate
        )
        await close_all(warm)
        if failures:
            raise fail_with_log(proc, f"warm-up connections failed: {failures[0]}")
        await asyncio.sleep(WS_SETTLE_S)
        before, fds_before = read_status(pid, "VmRSS"), open_fds(pid)
        say(f"ws ({variant}): opening {count:,} idle connections")
        opened, failures = await open_many(url, core.admin_key, count, deflate=deflate)
        await asyncio.sleep(WS_SETTLE_S)
        with_them, fds_with = read_status(pid, "VmRSS"), open_fds(pid)
        await close_all(opened)
        await asyncio.sleep(WS_SETTLE_S)
        after = read_status(pid, "VmRSS")
        if not proc.alive():
            raise fail_with_log(proc, "the channel died during the run")
    finally:
        proc.stop()
    note = reporting.WS_VARIANTS[variant]
    if failures:
        note += f"; {len(failures)} connection(s) failed, e.g. {failures[0]}"
    return {
        "status": "ok" if not failures else "failed",
        "note": note,
        "connections": len(opened),
        "rss_before_kib": before,
        "rss_with_kib": with_them,
        "rss_after_close_kib": after,
        "kib_per_connection": round((with_them - before) / max(len(opened), 1), 2),
        "fds_before": fds_before,
        "fds_with": fds_with,
    }


async def measure_ws(
    work: Path, settings: Settings, say: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Both client variants against a fresh channel each, one core behind them."""
    missing = ws_available()
    if missing:
        return {"ws": {"status": "skipped", "note": missing}}
    raise_fd_limit(2 * settings.ws_connections + 1024)
    results: dict[str, dict[str, Any]] = {}
    async with contextlib.AsyncExitStack() as stack:
        say("ws: starting the core")
        core = await start_core(stack, work, settings, {})
        for deflate in (True, False):
            variant = "deflate" if deflate else "plain"
            results[variant] = await measure_ws_variant(
                work, core, settings, deflate=deflate, say=say
            )
    return results


# --- the run -------------------------------------------------------------------------------


async def guarded(
    report_entry: Callable[[], Awaitable[dict[str, Any]]], name: str, workers: int = 0
) -> tuple[dict[str, Any], bool]:
    """Run one part; on BenchError, its failed entry. (entry, whether it failed)."""
    try:
        return await report_entry(), False
    except BenchError as exc:
        console.print(f"[red]{name}: could not run:[/red]\n{escape(str(exc))}")
        return {"status": "failed", "note": str(exc)[:4000], "workers": workers}, True


async def measure_all(tmp: Path, settings: Settings, report: reporting.Report) -> bool:
    """Every scenario, then the WebSocket part; whether something could not run."""
    failed, rabbit_failure = False, ""
    try:
        version: str | None = await rabbitmq_version(settings.amqp_url)
    except BenchError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        version, failed, rabbit_failure = None, True, str(exc)
    report["meta"]["versions"]["rabbitmq"] = version
    scenarios = [("memory", 0)] + [(f"rabbitmq-{n}", n) for n in settings.workers]
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    async with contextlib.AsyncExitStack() as stack:
        progress = stack.enter_context(Progress(*columns, console=console))
        task = progress.add_task("starting the mock upstream")

        def say(message: str) -> None:
            progress.update(task, description=escape(message))

        mock = await start_mock(stack, tmp)
        for key, workers in scenarios:
            if workers and version is None:
                report["queues"][key] = {
                    "status": "failed",
                    "note": rabbit_failure,
                    "workers": workers,
                }
                continue
            work = tmp / key

            async def scenario(
                work: Path = work, key: str = key, workers: int = workers
            ) -> dict[str, Any]:
                return await run_scenario(work, key, workers, mock, settings, say)

            report["queues"][key], bad = await guarded(scenario, key, workers)
            failed |= bad
            if not bad:
                progress.console.print(escape(line(key, report["queues"][key])))
        if settings.ws_connections:
            entries, bad = await guarded(lambda: measure_ws(tmp / "ws", settings, say), "ws")
            report["ws"] = entries if not bad else {"ws": entries}
            failed |= bad or any(e["status"] == "failed" for e in report["ws"].values())
    return failed


def line(key: str, entry: dict[str, Any]) -> str:
    """One scenario's figures as a progress line."""
    row = entry["result"]
    return (
        f"  {key:<12} {row['rps']:>7.1f} jobs/s  TTFT p50 {fmt_ms(row['ttft_p50_ms'])} ms"
        f"  p99 {fmt_ms(row['ttft_p99_ms'])} ms  errors {row['errors']}"
    )


async def run(settings: Settings) -> int:
    """The whole benchmark; returns the exit code."""
    report = reporting.new_report(
        quick=settings.quick,
        settings={
            "clients": settings.clients,
            "duration_s": settings.duration_s,
            "warmup_s": settings.warmup_s,
            "workers": list(settings.workers),
            "ws_connections": settings.ws_connections,
            "stream_tokens": load.STREAM_TOKENS,
            "llm_log": settings.llm_log,
            "log_level": "WARNING",
            "amqp": settings.amqp_url.rpartition("@")[2],
            "ws_method": (
                f"VmRSS of `patchbay channel ws` after {WS_WARMUP_CONNECTIONS} connections were"
                f" opened and closed, then with the idle connections open ({WS_SETTLE_S:g} s"
                " later); each connection authenticated by ?api_key= and checked with one `auth`"
                " frame; KiB/conn = difference / connections; a fresh channel per variant"
            ),
        },
    )
    with contextlib.ExitStack() as stack:
        if settings.keep is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pb-bench-jobs-")))
        else:
            settings.keep.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix="pb-bench-jobs-", dir=settings.keep))
            console.print(escape(f"logs and data kept in {tmp}"))
        failed = await measure_all(tmp, settings, report)
    reporting.derive(report)
    reporting.print_report(console, report)
    console.print(f"[bold]reading:[/bold] {escape(reporting.reading(report))}")
    console.print(escape(save(settings.out, report, reporting.plot)))
    errors = sum((e.get("result") or {}).get("errors", 0) for e in report["queues"].values())
    if errors:
        console.print(f"[red]{errors} turn(s) failed[/red]")
    return 1 if failed or errors else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    settings = parse_args(argv)
    for library in ("aiormq", "aio_pika", "websockets"):  # failures are reported once, plainly
        logging.getLogger(library).setLevel(logging.CRITICAL)
    return run_bench(run, settings)


if __name__ == "__main__":
    sys.exit(main())
