"""Instruction API benchmark: seed 003's instructions over HTTP and over RabbitMQ, against baselines.

One run starts patchbay's core and its instruction consumer (``patchbay core`` and ``patchbay
channel instructions``, real processes) on embedded defaults in a temporary data dir, the local
model off, and measures a read (``USER_LIST``) and a write (``CHAT_CREATE`` with a title):

- over HTTP, aiohttp posting ``{"type", "data"}`` to ``POST /v1/instructions``; its baseline is
  ``GET /v1/me``, the cheapest authenticated core route, from the same client;
- over RabbitMQ, :class:`patchbay.sdk.InstructionClient` on a queue of the run's own; its baseline
  is the same client against an aio-pika echo server (this file with ``--echo-server``, a process
  of its own like the consumer) that answers to ``reply_to`` under the ``correlation_id`` as the
  consumer does, without the consumer's HTTP call to the core.

Each at one sequential client (latency) and 32 in flight (throughput), for a few seconds after a
short warm-up. Baseline, read and write run back to back, so the machine's noise hits them alike,
and every patchbay figure is also given as a ratio of its baseline. Every answer is checked: an
error envelope counts as an error. The queues are deleted at the end.

Usage: ``python bench/instructions.py [--quick] [--out bench/results/instructions.json]
[--amqp-url URL]``. Exits 1 when something could not run (RabbitMQ unreachable, a process that
did not start) or a request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson
import uvloop
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import instructions_report as reporting
import load
from gateway import BenchError, patchbay_command, run_bench, stop_on_error
from procs import ServerProcess, command_cpu_seconds, free_port, machine_busy_seconds, wait_ready
from report import save

from patchbay.channels.instructions import address
from patchbay.config import InstructionSettings
from patchbay.sdk import InstructionClient

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
READY_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0
PAUSE_S = 0.5
BROKER_COMMAND = "beam.smp"  # a local RabbitMQ's process, for its CPU use
READ = orjson.dumps({"type": "USER_LIST", "data": {}})

Call = Callable[[], Awaitable[str | None]]  # one round trip: None, or why it failed
Calls = dict[str, Call]  # by operation: reporting.OPERATIONS
OpenCalls = Callable[[int], contextlib.AbstractAsyncContextManager[Calls]]

console = Console()
if not console.is_terminal:  # piped or redirected: wide enough for the table
    console = Console(width=130)


@dataclass(frozen=True)
class Settings:
    """What one run does."""

    quick: bool
    out: Path
    amqp_url: str
    duration_s: float
    warmup_s: float


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1.5 s per scenario, to check it runs")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "instructions.json")
    parser.add_argument("--amqp-url", default=DEFAULT_AMQP_URL, help="default %(default)s")
    parser.add_argument(
        "--duration", type=float, help="seconds per scenario (default 8, quick 1.5)"
    )
    parser.add_argument("--echo-server", metavar="QUEUE", help=argparse.SUPPRESS)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from parsed arguments."""
    duration, warmup = (1.5, 0.3) if args.quick else (8.0, 1.0)
    return Settings(
        quick=args.quick,
        out=args.out,
        amqp_url=args.amqp_url,
        duration_s=max(0.5, min(args.duration or duration, 120.0)),
        warmup_s=warmup,
    )


# --- answers and calls ---------------------------------------------------------------------


def envelope_failure(raw: bytes | str, status: int = 200) -> str | None:
    """None for a success envelope (and HTTP 200), else what was wrong with the answer."""
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return f"HTTP {status}, not JSON: {raw[:200]!r}"
    if isinstance(answer, dict) and answer.get("status") == "success" and status == 200:
        return None
    message = answer.get("message") if isinstance(answer, dict) else None
    return f"HTTP {status}: {message or str(raw)[:200]}"


def chat_create(number: int) -> bytes:
    """A CHAT_CREATE instruction with a title of its own."""
    return orjson.dumps({"type": "CHAT_CREATE", "data": {"title": f"bench chat {number}"}})


def http_calls(session: aiohttp.ClientSession, core: str, admin_key: str) -> Calls:
    """The HTTP round trips: ``GET /v1/me`` as baseline, then the two instructions."""
    headers = {"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"}
    titles = itertools.count(1)

    async def me() -> str | None:
        try:
            async with session.get(f"{core}/v1/me", headers=headers) as resp:
                raw = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if resp.status == 200 else f"HTTP {resp.status}: {raw[:200]!r}"

    async def instruct(body: bytes) -> str | None:
        try:
            async with session.post(f"{core}/v1/instructions", data=body, headers=headers) as resp:
                raw = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return envelope_failure(raw, resp.status)

    return {
        "baseline": me,
        "USER_LIST": lambda: instruct(READ),
        "CHAT_CREATE": lambda: instruct(chat_create(next(titles))),
    }


class ConnectionLost(BenchError):
    """The transport is gone (a broker restart, say): the rest of its scenarios cannot run."""


def rabbitmq_calls(patchbay: InstructionClient, echo: InstructionClient) -> Calls:
    """The RabbitMQ round trips: the echo server as baseline, then the two instructions."""
    titles = itertools.count(1)
    read = READ.decode()

    async def ask(client: InstructionClient, body: str | bytes) -> str:
        try:
            return await client.request(body)
        # a closed connection raises ConnectionError, or RuntimeError on publishing
        except (ConnectionError, RuntimeError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise ConnectionLost(f"lost RabbitMQ; was it restarted? ({reason})") from exc

    async def checked(body: str | bytes) -> str | None:
        try:
            return envelope_failure(await ask(patchbay, body))
        except (TimeoutError, AMQPError) as exc:
            return f"{type(exc).__name__}: {exc}"

    async def echoed() -> str | None:
        try:
            answer = await ask(echo, read)
        except (TimeoutError, AMQPError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if answer == read else f"the echo answered {answer[:200]!r}"

    return {
        "baseline": echoed,
        "USER_LIST": lambda: checked(read),
        "CHAT_CREATE": lambda: checked(chat_create(next(titles))),
    }


# --- measuring -----------------------------------------------------------------------------


async def drive(
    call: Call, concurrency: int, duration_s: float, result: load.Result | None
) -> None:
    """``concurrency`` clients, each calling in a loop until ``duration_s`` has passed."""
    deadline = time.perf_counter() + duration_s

    async def client() -> None:
        for _ in range(load.MAX_REQUESTS):
            started = time.perf_counter()
            if started >= deadline:
                return
            failure = await call()
            if result is None:
                continue
            if failure is None:
                result.latencies_ms.append((time.perf_counter() - started) * 1000.0)
            else:
                result.error(failure)

    try:
        # each call has its own timeout; this bounds the whole run should one be missed
        async with asyncio.timeout(duration_s + REQUEST_TIMEOUT_S + 5), asyncio.TaskGroup() as tg:
            for _ in range(concurrency):
                tg.create_task(client())
    except* ConnectionLost as group:
        raise group.exceptions[0] from None
    except* TimeoutError as group:
        limit = duration_s + REQUEST_TIMEOUT_S + 5
        message = f"a {duration_s:g} s scenario did not finish within {limit:g} s"
        raise BenchError(message) from group.exceptions[0]


async def measure(
    call: Call, *, operation: str, mode: str, settings: Settings, probes: load.Probes
) -> load.Result:
    """Warm up, then measure one operation in one mode."""
    concurrency = reporting.MODES[mode]
    result = load.Result(mode, operation, concurrency)
    await drive(call, concurrency, settings.warmup_s, None)
    cpu, start = load.CpuWindow(probes), time.perf_counter()
    await drive(call, concurrency, settings.duration_s, result)
    result.finish(time.perf_counter() - start, cpu)
    return result


async def measure_transport(
    transport: str,
    open_calls: OpenCalls,
    settings: Settings,
    probes: load.Probes,
    progress: Progress,
    rows: list[dict[str, Any]],
) -> None:
    """Every operation in every mode over one transport; a row added to ``rows`` for each."""
    task = progress.add_task(transport, total=len(reporting.MODES) * len(reporting.OPERATIONS))
    for mode in reporting.MODES:
        async with open_calls(reporting.MODES[mode]) as calls:
            for operation in reporting.OPERATIONS:
                label = reporting.label(transport, operation)
                progress.update(task, description=f"{transport}: {label}, {mode}")
                result = await measure(
                    calls[operation],
                    operation=operation,
                    mode=mode,
                    settings=settings,
                    probes=probes,
                )
                progress.advance(task)
                rows.append({"transport": transport, **result.summary()})
                progress.console.print(escape(reporting.line(rows[-1])))
                await asyncio.sleep(PAUSE_S)
    progress.update(task, description=f"{transport}: done")


# --- processes and queues ------------------------------------------------------------------


@dataclass(frozen=True)
class Patchbay:
    """The running core, and how to reach it."""

    proc: ServerProcess
    core_url: str
    admin_key: str
    env: dict[str, str]


def patchbay_env(
    data_dir: Path, admin_key: str, core_port: int, amqp_url: str, queue: str
) -> dict[str, str]:
    """The environment of both patchbay processes: embedded defaults, no local model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATCHBAY_")}
    env.update(
        {
            "PATCHBAY_DATA_DIR": str(data_dir),
            "PATCHBAY_ADMIN_KEY": admin_key,
            "PATCHBAY_CORE__PORT": str(core_port),
            "PATCHBAY_LOCAL_MODEL__ENABLED": "false",
            "PATCHBAY_LOG__LEVEL": "WARNING",
            "PATCHBAY_RABBITMQ_URL": amqp_url,
            "PATCHBAY_INSTRUCTIONS__QUEUE": queue,
            "LLM_USER_PATH": str(data_dir / "llm-user"),  # the llm library's files stay here too
        }
    )
    return env


async def start_core(tmp: Path, amqp_url: str, queue: str) -> Patchbay:
    """Start ``patchbay core`` and wait for ``/healthz``."""
    admin_key = "pb-bench-" + secrets.token_hex(16)
    core_port = free_port()
    data_dir = tmp / "patchbay-data"
    data_dir.mkdir()
    env = patchbay_env(data_dir, admin_key, core_port, amqp_url, queue)
    argv = [str(patchbay_command()), "core"]
    proc = ServerProcess("patchbay core", argv, tmp / "core.log", env=env, cwd=tmp)
    core_url = f"http://127.0.0.1:{core_port}"
    with stop_on_error(proc):
        failure = await wait_ready([f"{core_url}/healthz"], proc, READY_TIMEOUT_S)
        if failure:
            raise BenchError(f"{failure}\n--- core output (tail) ---\n{proc.log_tail()}")
    return Patchbay(proc, core_url, admin_key, env)


async def wait_answering(client: InstructionClient, body: str, proc: ServerProcess) -> None:
    """Wait until the server behind ``client``'s queue answers (requests queue up until then)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(
                f"{proc.name} exited with code {proc.popen.returncode}:\n{proc.log_tail()}"
            )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await client.request(body)
                return
    raise BenchError(
        f"{proc.name} did not answer within {READY_TIMEOUT_S:.0f} s:\n{proc.log_tail()}"
    )


async def rabbitmq_version(url: str) -> str:
    """RabbitMQ's version; raises BenchError, saying so plainly, when it cannot be reached."""
    try:
        connection = await aio_pika.connect(url, timeout=5)
    except (OSError, AMQPError, TimeoutError) as exc:
        raise BenchError(
            f"RabbitMQ is not reachable at {address(url, '')} ({type(exc).__name__}: {exc});"
            " start it (`sudo systemctl start rabbitmq-server`, or `rabbitmq-server`) or pass"
            " --amqp-url. The RabbitMQ half of the benchmark did not run."
        ) from exc
    transport = connection.transport
    properties = transport.connection.server_properties if transport is not None else {}
    await connection.close()
    version = properties.get("version", "?")
    return version.decode() if isinstance(version, bytes) else str(version)


async def delete_queues(url: str, names: list[str]) -> None:
    """Delete the run's queues (after their consumers stopped)."""
    try:
        connection = await aio_pika.connect(url, timeout=10)
        async with connection:
            channel = await connection.channel()
            for name in names:
                await channel.queue_delete(name)
    except (OSError, AMQPError, TimeoutError) as exc:
        console.print(f"[yellow]could not delete the queues {names}: {escape(str(exc))}[/yellow]")


async def serve_echo(url: str, queue: str) -> None:
    """The RabbitMQ baseline's server: answers each message with its own body, as the consumer would.

    Same shape as the instruction consumer: durable queue, the consumer's prefetch, the answer
    published persistent and confirmed on a channel of its own, then the request acknowledged.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=InstructionSettings().prefetch)
        requests = await channel.declare_queue(queue, durable=True)

        async def answer(message: AbstractIncomingMessage) -> None:
            if message.reply_to:
                reply = aio_pika.Message(
                    message.body,
                    content_type="application/json",
                    correlation_id=message.correlation_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                await publisher.default_exchange.publish(
                    reply, routing_key=message.reply_to, mandatory=True
                )
            await message.ack()

        await requests.consume(answer)
        await stop.wait()


# --- the run -------------------------------------------------------------------------------


def probes_for(procs: dict[str, ServerProcess]) -> load.Probes:
    """CPU probes: each started process, the local broker if there is one, and the machine."""
    probes: dict[str, load.CpuProbe] = {name: proc.cpu_seconds for name, proc in procs.items()}
    if command_cpu_seconds(BROKER_COMMAND) > 0:
        probes["broker"] = lambda: command_cpu_seconds(BROKER_COMMAND)
    probes[load.MACHINE] = machine_busy_seconds
    return probes


def http_opener(pb: Patchbay) -> OpenCalls:
    """A fresh keep-alive session per mode, its connection pool as large as the concurrency."""

    @contextlib.asynccontextmanager
    async def open_calls(concurrency: int) -> AsyncIterator[Calls]:
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            yield http_calls(session, pb.core_url, pb.admin_key)

    return open_calls


async def start_rabbitmq_side(
    stack: contextlib.AsyncExitStack, tmp: Path, pb: Patchbay, settings: Settings
) -> tuple[OpenCalls, dict[str, ServerProcess]]:
    """Start the consumer and the echo server, connect a client to each and wait for answers."""
    queue = pb.env["PATCHBAY_INSTRUCTIONS__QUEUE"]
    echo_queue = f"{queue}-echo"
    stack.push_async_callback(delete_queues, settings.amqp_url, [queue, echo_queue])
    consumer_argv = [str(patchbay_command()), "channel", "instructions"]
    consumer = ServerProcess(
        "instruction consumer", consumer_argv, tmp / "consumer.log", pb.env, tmp
    )
    stack.callback(consumer.stop)
    echo_argv = [sys.executable, __file__, "--echo-server", echo_queue]
    echo_argv += ["--amqp-url", settings.amqp_url]
    echo = ServerProcess("echo server", echo_argv, tmp / "echo.log", cwd=tmp)
    stack.callback(echo.stop)
    clients = []
    for name in (queue, echo_queue):
        client = InstructionClient(
            settings.amqp_url, queue=name, api_key=pb.admin_key, timeout=REQUEST_TIMEOUT_S
        )
        clients.append(await stack.enter_async_context(client))
    await wait_answering(clients[0], READ.decode(), consumer)
    await wait_answering(clients[1], READ.decode(), echo)

    @contextlib.asynccontextmanager
    async def open_calls(_concurrency: int) -> AsyncIterator[Calls]:
        yield rabbitmq_calls(clients[0], clients[1])  # one client, many requests in flight

    return open_calls, {"consumer": consumer, "echo": echo}


async def measure_all(tmp: Path, settings: Settings, report: reporting.Report) -> None:
    """Start everything, measure both transports, stop everything and delete the queues."""
    queue = f"patchbay.bench-{secrets.token_hex(6)}"
    async with contextlib.AsyncExitStack() as stack:
        with console.status("starting patchbay core"):
            pb = await start_core(tmp, settings.amqp_url, queue)
        stack.callback(pb.proc.stop)
        procs = {"core": pb.proc}
        openers: dict[str, OpenCalls] = {"http": http_opener(pb)}
        report["transports"]["http"] = {"status": "ok", "note": f"core on {pb.core_url}"}
        try:
            with console.status("starting the instruction consumer and the echo server"):
                version = await rabbitmq_version(settings.amqp_url)
                openers["rabbitmq"], started = await start_rabbitmq_side(stack, tmp, pb, settings)
            procs.update(started)
            note = f"RabbitMQ {version}, queue {queue}"
            report["transports"]["rabbitmq"] = {"status": "ok", "note": note}
        except (BenchError, ConnectionError) as exc:
            console.print(f"[red]RabbitMQ: could not run:[/red] {escape(str(exc))}")
            report["transports"]["rabbitmq"] = {"status": "failed", "note": str(exc)[:4000]}
        probes = probes_for(procs)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            for transport, open_calls in openers.items():
                try:
                    await measure_transport(
                        transport, open_calls, settings, probes, progress, report["rows"]
                    )
                except ConnectionLost as exc:
                    console.print(f"[red]{transport}: stopped:[/red] {escape(str(exc))}")
                    report["transports"][transport] = {"status": "failed", "note": str(exc)}
        dead = [proc.name for proc in procs.values() if not proc.alive()]
        for entry in report["transports"].values() if dead else ():
            entry.update(status="failed", note=f"died during the run: {', '.join(dead)}")


async def run(settings: Settings) -> int:
    """The whole benchmark; returns the exit code."""
    report = reporting.new_report(
        quick=settings.quick,
        settings={
            "duration_s": settings.duration_s,
            "warmup_s": settings.warmup_s,
            "concurrency": reporting.MODES,
            "amqp": address(settings.amqp_url, ""),
        },
    )
    with tempfile.TemporaryDirectory(prefix="patchbay-bench-") as tmp:
        await measure_all(Path(tmp), settings, report)
    reporting.derive(report)
    reporting.print_report(console, report)
    console.print(escape(save(settings.out, report, reporting.plot)))
    failed = any(entry["status"] != "ok" for entry in report["transports"].values())
    errors = sum(row["errors"] for row in report["rows"])
    if errors:
        console.print(f"[red]{errors} request(s) failed[/red]")
    return 1 if failed or errors else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    for library in ("aiormq", "aio_pika"):  # a lost broker is reported once, plainly, not traced
        logging.getLogger(library).setLevel(logging.ERROR)
    if args.echo_server:
        uvloop.run(serve_echo(args.amqp_url, args.echo_server))
        return 0
    return run_bench(run, settings_from(args))


if __name__ == "__main__":
    sys.exit(main())
