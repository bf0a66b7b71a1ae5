"""Helper benchmark: what a tool call through the core adds over calling the helper directly, and
how fast the built-in helpers turn a PDF and speech into text through the core's ``/v1/convert``.

Everything runs as real processes on loopback: ``patchbay core`` (a temporary data dir, the local
model and the built-in helpers off) and helpers started with ``patchbay helper run|builtin``, which
register themselves with the core using the helper key derived from the run's installation secret.

Tool calls: ``make_echo_helper`` below (one trivial tool, written with the SDK) is called directly
(``POST {helper}/capabilities/echo``) and through the core (``POST /v1/helpers/bench/capabilities/
echo``, admin key), from 1 sequential client and with 16 calls in flight; every answer is checked.
Conversions: a 20-page text PDF (fpdf2) through the ``documents`` helper and ~30 s of varied
sentences spoken by espeak-ng through the ``speech`` helper (Whisper base), one file at a time,
after one cold call; through the core and, for reference, directly. The speech row is skipped when
espeak-ng is missing.

Usage: ``python bench/helpers.py [--quick] [--out bench/results/helpers.json]
[--speech-model base]``. Writes the JSON and a PNG plot beside it. Exits 1 when something could
not run, a call failed or a conversion came back wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import io
import os
import random
import re
import secrets
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import orjson
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import helpers_report as reporting
import load
from gateway import BenchError, patchbay_command, run_bench
from procs import ServerProcess, free_port, machine_busy_seconds, wait_ready
from report import fmt_ms, save

from patchbay.helpers import Helper

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
READY_TIMEOUT_S = 60.0
SPEECH_READY_TIMEOUT_S = 180.0  # the first run joins Whisper base from its two packages
CALL_TIMEOUT_S = 30.0
CONVERT_TIMEOUT_S = 600.0
IN_FLIGHT = 16
WARMUP_CALLS = 50
ECHO = "bench"  # the tool helper's name
PDF_PAGES = 20
PDF_LINES = 20  # per page; Helvetica 16 with 10 mm lines fits 27

console = Console()
if not console.is_terminal:  # piped or redirected: wide enough for the tables
    console = Console(width=130)


# --- the tool helper (imported by `patchbay helper run helpers:make_echo_helper`) ----------


class Echoed(BaseModel):
    text: str
    length: int


def make_echo_helper() -> Helper:
    """A helper with one trivial tool: what a call costs without any work in it."""
    helper = Helper(ECHO, description="Answers at once; for measuring the cost of a call.")

    @helper.tool(idempotent=True, timeout_s=10)
    async def echo(text: str) -> Echoed:
        """The text given, and its length."""
        return Echoed(text=text, length=len(text))

    return helper


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What one run does."""

    quick: bool
    out: Path
    seq_calls: int
    duration_s: float
    pdf_runs: int
    speech_runs: int
    speech_model: str


def parse_args(argv: list[str] | None) -> Settings:
    """Settings from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer calls and conversions")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "helpers.json")
    parser.add_argument("--calls", type=int, help="sequential tool calls per path (2000/300)")
    parser.add_argument("--duration", type=float, help="seconds of 16-in-flight calls (10/3)")
    parser.add_argument("--speech-model", default="base", help="base, tiny.en or a directory")
    args = parser.parse_args(argv)
    calls, duration, pdf_runs, speech_runs = (300, 3.0, 2, 1) if args.quick else (2000, 10.0, 5, 3)
    return Settings(
        quick=args.quick,
        out=args.out,
        seq_calls=max(1, min(args.calls or calls, 100_000)),
        duration_s=max(0.5, min(args.duration or duration, 300.0)),
        pdf_runs=pdf_runs,
        speech_runs=speech_runs,
        speech_model=args.speech_model,
    )


# --- processes -----------------------------------------------------------------------------


def fail_with_log(proc: ServerProcess, why: str) -> BenchError:
    """A BenchError carrying the tail of the process's output."""
    return BenchError(f"{why}\n--- {proc.name} output (tail) ---\n{proc.log_tail()}")


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


async def start_core(stack: contextlib.ExitStack, work: Path) -> Core:
    """Start ``patchbay core`` and wait for ``/healthz``; stopped by ``stack``."""
    data_dir = work / "data"
    data_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATCHBAY_")}
    env.update(
        {
            "PATCHBAY_DATA_DIR": str(data_dir),
            "PATCHBAY_SECRET_KEY": secrets.token_hex(32),  # the helpers derive their key from it
            "PATCHBAY_ADMIN_KEY": "pb-bench-" + secrets.token_hex(16),
            "PATCHBAY_CORE__PORT": str(free_port()),
            "PATCHBAY_LOCAL_MODEL__ENABLED": "false",
            "PATCHBAY_HELPERS__BUILTIN": "[]",
            "PATCHBAY_LOG__LEVEL": "WARNING",
            "LLM_USER_PATH": str(data_dir / "llm-user"),  # the llm library's files stay here
        }
    )
    proc = ServerProcess(
        "patchbay core", [str(patchbay_command()), "core"], work / "core.log", env, work
    )
    stack.callback(proc.stop)
    url = f"http://127.0.0.1:{env['PATCHBAY_CORE__PORT']}"
    failure = await wait_ready([f"{url}/healthz"], proc, READY_TIMEOUT_S)
    if failure:
        raise fail_with_log(proc, failure)
    return Core(proc, url, env["PATCHBAY_ADMIN_KEY"], env)


async def start_helper(
    stack: contextlib.ExitStack, core: Core, name: str, command: list[str], timeout_s: float
) -> tuple[ServerProcess, str]:
    """Start ``patchbay helper COMMAND`` registering with ``core``; wait until the core has it up."""
    port = free_port()
    argv = [str(patchbay_command()), "helper", *command, "--port", str(port), "--core", core.url]
    work = core.proc.log_path.parent
    proc = ServerProcess(f"helper {name}", argv, work / f"helper-{name}.log", core.env, work)
    stack.callback(proc.stop)
    url = f"http://127.0.0.1:{port}"
    failure = await wait_ready([f"{url}/health"], proc, timeout_s)
    if failure:
        raise fail_with_log(proc, failure)
    await wait_registered(core, proc, name)
    return proc, url


async def wait_registered(core: Core, proc: ServerProcess, name: str) -> None:
    """Poll ``GET /v1/helpers`` until ``name`` is there and up."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout, headers=core.headers()) as session:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise fail_with_log(proc, f"{proc.name} exited before it registered")
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                async with session.get(f"{core.url}/v1/helpers") as resp:
                    found = await resp.json() if resp.status == 200 else []
                    if any(h["name"] == name and h["state"] == "up" for h in found):
                        return
            await asyncio.sleep(0.2)
    raise fail_with_log(proc, f"{name} not registered with the core after {READY_TIMEOUT_S:.0f} s")


# --- tool calls ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CallPath:
    """One way to call the echo tool: its URL and headers."""

    name: str  # "direct" or "core"
    url: str
    headers: dict[str, str]


async def call_once(session: aiohttp.ClientSession, path: CallPath, text: str) -> str | None:
    """One tool call, its answer checked; None when it succeeded, else why it failed."""
    try:
        body = orjson.dumps({"text": text})
        async with session.post(path.url, data=body, headers=path.headers) as resp:
            raw = await resp.read()
            if resp.status != 200:
                return f"HTTP {resp.status}: {raw[:200]!r}"
        if orjson.loads(raw) != {"text": text, "length": len(text)}:
            return f"wrong answer: {raw[:200]!r}"
    except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(CALL_TIMEOUT_S))


async def sequential_calls(path: CallPath, calls: int, probes: load.Probes) -> load.Result:
    """``calls`` tool calls from one client, one after another, after a warm-up."""
    result = load.Result("seq_1", path.name, 1)
    async with _session(1) as session:
        for n in range(WARMUP_CALLS):
            await call_once(session, path, f"warm-up {n}")
        cpu, start = load.CpuWindow(probes), time.perf_counter()
        for n in range(calls):
            t0 = time.perf_counter()
            failure = await call_once(session, path, f"call {n}")
            if failure is None:
                result.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
            else:
                result.error(failure)
            if time.perf_counter() - start > load.SEQUENTIAL_TIME_CAP_S:
                result.error(f"stopped at the {load.SEQUENTIAL_TIME_CAP_S:.0f} s cap")
                break
        result.finish(time.perf_counter() - start, cpu)
    return result


async def in_flight_calls(path: CallPath, duration_s: float, probes: load.Probes) -> load.Result:
    """``IN_FLIGHT`` clients calling one after another for ``duration_s``, after a warm-up."""
    result = load.Result(f"conc_{IN_FLIGHT}", path.name, IN_FLIGHT)

    async def client(session: aiohttp.ClientSession, seconds: float, record: bool) -> None:
        deadline = time.perf_counter() + seconds
        for n in range(load.MAX_REQUESTS):
            if time.perf_counter() >= deadline:
                return
            t0 = time.perf_counter()
            failure = await call_once(session, path, f"call {n}")
            if record and failure is None:
                result.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
            elif record and failure is not None:
                result.error(failure)

    async def run(session: aiohttp.ClientSession, seconds: float, record: bool) -> None:
        async with asyncio.timeout(seconds + CALL_TIMEOUT_S + 5), asyncio.TaskGroup() as tg:
            for _ in range(IN_FLIGHT):
                tg.create_task(client(session, seconds, record))

    async with _session(IN_FLIGHT) as session:
        await run(session, 0.5, record=False)
        cpu, start = load.CpuWindow(probes), time.perf_counter()
        await run(session, duration_s, record=True)
        result.finish(time.perf_counter() - start, cpu)
    return result


async def measure_tool_calls(
    stack: contextlib.ExitStack, core: Core, settings: Settings, say: Callable[[str], None]
) -> dict[str, Any]:
    """Both paths at both loads, with CPU probes on the core and the helper."""
    say("tool calls: starting the echo helper")
    command = ["run", "helpers:make_echo_helper", "--app-dir", str(BENCH_DIR)]
    helper, url = await start_helper(stack, core, ECHO, command, READY_TIMEOUT_S)
    json_type = {"Content-Type": "application/json"}
    paths = (
        CallPath("direct", f"{url}/capabilities/echo", json_type),
        CallPath(
            "core",
            f"{core.url}/v1/helpers/{ECHO}/capabilities/echo",
            {**json_type, **core.headers()},
        ),
    )
    probes = {
        "core": core.proc.cpu_seconds,
        "helper": helper.cpu_seconds,
        load.MACHINE: machine_busy_seconds,
    }
    entries: dict[str, Any] = {}
    for path in paths:
        say(f"tool calls, {path.name}: {settings.seq_calls:,} sequential calls")
        seq = await sequential_calls(path, settings.seq_calls, probes)
        say(f"tool calls, {path.name}: {IN_FLIGHT} in flight for {settings.duration_s:g} s")
        conc = await in_flight_calls(path, settings.duration_s, probes)
        for row in (seq, conc):
            console.print(escape(call_line(path.name, row)))
        entries[path.name] = {
            "url": path.url,
            "scenarios": {seq.scenario: seq.summary(), conc.scenario: conc.summary()},
        }
    dead = [p.name for p in (core.proc, helper) if not p.alive()]
    if dead:
        raise BenchError(f"died during the tool calls: {', '.join(dead)}")
    note = "one trivial tool (echo) of a helper written with the SDK, answers checked"
    return {"status": "ok", "note": note, "paths": entries}


def call_line(path: str, row: load.Result) -> str:
    """One tool-call measurement as a progress line."""
    return (
        f"  {path:<6} {reporting.CALL_SCENARIOS[row.scenario]:<22} {row.rps:>8,.0f} calls/s"
        f"  p50 {fmt_ms(row.p50_ms):>6} ms  p99 {fmt_ms(row.p99_ms):>6} ms  errors {row.errors}"
    )


# --- conversions ---------------------------------------------------------------------------


# ~30 s at 140 words/min, never repeated (Whisper slows down on repetition), no numbers or
# British spellings (Whisper writes "11" and "harbor", which would count as word errors)
SENTENCES = (
    "The harbor master counted the fishing boats returning before the storm arrived.",
    "Our library will stay open late on Thursday for students preparing their exams.",
    "Please remember to water the tomato plants and close the greenhouse window tonight.",
    "A quiet violinist practiced scales while the neighbors painted their kitchen yellow.",
    "The train to the northern mountains leaves from the last platform just after noon.",
    "Fresh bread, sharp cheese and ripe pears made a simple lunch beside the river.",
)


def media() -> ModuleType:
    """The tests' file generators (fpdf2, espeak-ng), imported from the repository."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module("tests.support.media")


def spoken_wav() -> bytes:
    """The sentences read by espeak-ng, about 30 seconds of WAV."""
    wav: bytes = media().spoken_wav(" ".join(SENTENCES))
    return wav


def wav_seconds(data: bytes) -> float:
    """How long a WAV file plays (espeak-ng writes an unknown length in its header when piped)."""
    with wave.open(io.BytesIO(data)) as wav:
        frame_bytes, rate = wav.getsampwidth() * wav.getnchannels(), wav.getframerate()
    samples_start = data.find(b"data") + 8  # the chunk's id and size come first
    seconds: float = (len(data) - samples_start) / frame_bytes / rate
    return seconds


def page_lines(page: int) -> list[str]:
    """A page of prose-like lines, different on every page, with a marker to find it by."""
    words = [w.strip(".,").lower() for s in SENTENCES for w in s.split()]
    rng = random.Random(page)  # noqa: S311  # a reproducible page, not a secret
    lines = [f"Page {page + 1} marker pbq{page + 1:03d}x"]
    while len(lines) < PDF_LINES:
        line = ""
        while len(line) < 50:
            line += rng.choice(words) + " "
        lines.append(line.strip().capitalize() + ".")
    return lines


def pdf_document() -> bytes:
    """A PDF of ``PDF_PAGES`` pages of text (a text layer, no scans), written by fpdf2."""
    pdf: bytes = media().text_pdf([page_lines(page) for page in range(PDF_PAGES)])
    return pdf


def check_pdf(answer: dict[str, Any]) -> str | None:
    """None when every page's text came back, else what is missing."""
    missing = [p + 1 for p in range(PDF_PAGES) if f"pbq{p + 1:03d}x" not in answer["text"]]
    if answer.get("pages") != PDF_PAGES:
        return f"{answer.get('pages')} pages reported, {PDF_PAGES} sent"
    return f"pages {missing} missing from the text" if missing else None


def word_error_rate(reference: str, heard: str) -> float:
    """Word-level edit distance over the reference's length (case and punctuation ignored)."""
    ref, hyp = (re.findall(r"[a-z']+", s.lower()) for s in (reference, heard))
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        current = [i]
        for j, other in enumerate(hyp, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other))
            )
        previous = current
    return previous[-1] / max(len(ref), 1)


@dataclass(frozen=True)
class Conversion:
    """One file to convert, and what makes its throughput."""

    key: str  # "pdf" or "speech"
    helper: str  # the built-in helper's name
    capability: str
    media_type: str
    data: bytes
    units: float  # pages, or seconds of audio
    runs: int


async def convert_once(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], job: Conversion
) -> tuple[float, dict[str, Any]]:
    """POST the file; (seconds, the ToText answer). Raises BenchError on any failure."""
    headers = {**headers, "Content-Type": job.media_type}
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=job.data, headers=headers) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise BenchError(f"POST {url} answered {resp.status}: {raw[:300]!r}")
        answer: dict[str, Any] = orjson.loads(raw)
    except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
        raise BenchError(f"POST {url} failed: {type(exc).__name__}: {exc}") from exc
    return time.perf_counter() - t0, answer


async def measure_conversion(
    stack: contextlib.ExitStack,
    core: Core,
    job: Conversion,
    command: list[str],
    say: Callable[[str], None],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start the helper, convert once cold, then ``job.runs`` times directly and through the core.

    Returns the report entry and the last answer through the core.
    """
    say(f"{job.key}: starting the {job.helper} helper")
    helper, url = await start_helper(stack, core, job.helper, command, SPEECH_READY_TIMEOUT_S)
    timeout = aiohttp.ClientTimeout(total=CONVERT_TIMEOUT_S)
    targets = {  # the last answer, which the caller checks, is one through the core
        "direct": (f"{url}/capabilities/{job.capability}", {}),
        "core": (f"{core.url}/v1/convert", core.headers()),
    }
    entry: dict[str, Any] = {"bytes": len(job.data), "units": round(job.units, 2)}
    async with aiohttp.ClientSession(timeout=timeout) as session:
        say(f"{job.key}: first (cold) conversion through the core")
        entry["cold_s"], answer = await convert_once(session, *targets["core"], job)
        seconds: dict[str, list[float]] = {path: [] for path in targets}
        for n in range(job.runs):
            for path, target in targets.items():  # alternated: background load hits both alike
                say(f"{job.key}: {path}, conversion {n + 1} of {job.runs}")
                elapsed, answer = await convert_once(session, *target, job)
                seconds[path].append(elapsed)
    for path, runs in seconds.items():
        entry[path] = reporting.conversion_figures(runs, job.units)
    if not helper.alive():
        raise fail_with_log(helper, f"{helper.name} died during the conversions")
    return entry, answer


async def measure_pdf(
    stack: contextlib.ExitStack, core: Core, settings: Settings, say: Callable[[str], None]
) -> dict[str, Any]:
    """Pages per second of a text PDF through the documents helper."""
    say("pdf: writing the document")
    job = Conversion(
        key="pdf",
        helper="documents",
        capability="document-to-text",
        media_type="application/pdf",
        data=pdf_document(),
        units=PDF_PAGES,
        runs=settings.pdf_runs,
    )
    entry, answer = await measure_conversion(stack, core, job, ["builtin", "documents"], say)
    problem = check_pdf(answer)
    entry["check"] = problem or f"all {PDF_PAGES} pages' text came back"
    entry["status"] = "failed" if problem else "ok"
    entry["note"] = f"{PDF_PAGES}-page text PDF ({len(job.data) / 1024:.0f} KiB), documents helper"
    return entry


async def measure_speech(
    stack: contextlib.ExitStack, core: Core, settings: Settings, say: Callable[[str], None]
) -> dict[str, Any]:
    """Seconds of audio per second through the speech helper; skipped without espeak-ng."""
    if media().espeak() is None:
        return {"status": "skipped", "note": "espeak-ng is not installed (apt install espeak-ng)"}
    say("speech: speaking the sentences with espeak-ng")
    wav = spoken_wav()
    job = Conversion(
        key="speech",
        helper="speech",
        capability="speech-to-text",
        media_type="audio/wav",
        data=wav,
        units=wav_seconds(wav),
        runs=settings.speech_runs,
    )
    command = ["builtin", "speech", "-o", f"model={settings.speech_model}"]
    entry, answer = await measure_conversion(stack, core, job, command, say)
    wer = word_error_rate(" ".join(SENTENCES), answer["text"])
    entry["word_error_rate"] = round(wer, 3)
    entry["check"] = f"{wer:.0%} word errors against the script"
    entry["status"] = "ok" if answer["text"].strip() else "failed"
    entry["note"] = (
        f"{job.units:.1f} s of espeak-ng speech (WAV, {len(wav) / 1024:.0f} KiB),"
        f" speech helper, Whisper {settings.speech_model}"
    )
    entry["transcript"] = answer["text"]
    return entry


# --- the run -------------------------------------------------------------------------------


Part = Callable[[contextlib.ExitStack, Core, Settings, Callable[[str], None]], Any]


async def guarded(
    part: Part, name: str, core: Core, settings: Settings, say: Callable[[str], None]
) -> tuple[dict[str, Any], bool]:
    """Run one part with its own helpers, stopped after it; (entry, whether it failed)."""
    try:
        with contextlib.ExitStack() as helpers:
            entry: dict[str, Any] = await part(helpers, core, settings, say)
    except BenchError as exc:
        console.print(f"[red]{name}: could not run:[/red]\n{escape(str(exc))}")
        return {"status": "failed", "note": str(exc)[:4000]}, True
    return entry, entry.get("status") == "failed"


@contextlib.contextmanager
def progress_line() -> Iterator[Callable[[str], None]]:
    """A spinner with the elapsed time; yields the function that sets its text."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("starting the core")
        yield lambda message: progress.update(task, description=escape(message))


async def measure_all(tmp: Path, settings: Settings, report: reporting.Report) -> bool:
    """The tool calls, then the conversions, on one core; whether something failed."""
    failed = False
    with contextlib.ExitStack() as stack, progress_line() as say:
        try:
            core = await start_core(stack, tmp)
        except BenchError as exc:
            console.print(f"[red]the core could not start:[/red]\n{escape(str(exc))}")
            failure = {"status": "failed", "note": str(exc)[:4000]}
            report["tool_calls"] = failure
            report["conversions"] = dict.fromkeys(reporting.CONVERSIONS, failure)
            return True
        report["tool_calls"], failed = await guarded(
            measure_tool_calls, "tool calls", core, settings, say
        )
        for key, part in (("pdf", measure_pdf), ("speech", measure_speech)):
            entry, bad = await guarded(part, key, core, settings, say)
            report["conversions"][key] = entry
            failed |= bad
            if entry["status"] == "ok":
                console.print(escape(conversion_line(key, entry)))
        if not core.proc.alive():
            console.print(
                f"[red]the core died during the run:[/red]\n{escape(core.proc.log_tail())}"
            )
            failed = True
    return failed


def conversion_line(key: str, entry: dict[str, Any]) -> str:
    """One conversion's figures as a progress line."""
    unit = reporting.CONVERSIONS[key][1]
    core, direct = entry["core"], entry["direct"]
    return (
        f"  {key:<6} through the core {core['rate']:>6.2f} {unit}"
        f" (median {core['median_s']:.2f} s), directly {direct['rate']:.2f}; {entry['check']}"
    )


async def run(settings: Settings) -> int:
    """The whole benchmark; returns the exit code."""
    report = reporting.new_report(
        quick=settings.quick,
        settings={
            "sequential_calls": settings.seq_calls,
            "warmup_calls": WARMUP_CALLS,
            "in_flight": IN_FLIGHT,
            "duration_s": settings.duration_s,
            "pdf_pages": PDF_PAGES,
            "pdf_runs": settings.pdf_runs,
            "speech_runs": settings.speech_runs,
            "speech_model": settings.speech_model,
            "log_level": "WARNING",
        },
    )
    with tempfile.TemporaryDirectory(prefix="pb-bench-helpers-") as tmp:
        failed = await measure_all(Path(tmp), settings, report)
    reporting.derive(report)
    reporting.print_report(console, report)
    console.print(f"[bold]reading:[/bold] {escape(reporting.reading(report))}")
    console.print(escape(save(settings.out, report, reporting.plot)))
    errors = sum(
        row["errors"]
        for entry in report["tool_calls"].get("paths", {}).values()
        for row in entry["scenarios"].values()
    )
    if errors:
        console.print(f"[red]{errors} tool call(s) failed[/red]")
    return 1 if failed or errors else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    settings = parse_args(argv)
    return run_bench(run, settings)


if __name__ == "__main__":
    sys.exit(main())
