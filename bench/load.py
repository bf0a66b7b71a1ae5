"""Load clients for the gateway benchmark: aiohttp, in the benchmark's own process.

Each scenario opens one ``aiohttp.ClientSession`` with a ``TCPConnector`` limited to the
scenario's concurrency and keeps its connections alive. Every loop is bounded both in
request count and in time, and every request has a timeout. The process's own CPU time is
recorded per scenario so a report can tell when the client, not the target, was the limit
(on a 2-core machine the client and the target share the cores).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

STREAM_TOKENS = 64
MAX_REQUESTS = 1_000_000  # per scenario, far above anything a 10 s run reaches here
REQUEST_TIMEOUT_S = 30.0
SEQUENTIAL_TIME_CAP_S = 120.0
MAX_ERROR_SAMPLES = 5
PAIRED_RUN = 10  # calls in a row to one side when a target and the baseline take turns

Worker = Callable[[aiohttp.ClientSession, float, bool], Coroutine[Any, Any, None]]
CpuProbe = Callable[[], float]  # CPU seconds used so far by some processes
Probes = Mapping[str, CpuProbe]
MACHINE = "machine"  # the probe for all CPU time spent on the machine, if given


class CpuWindow:
    """CPU use over a measurement: this process ("client") and each probe, in % of a core.

    With a ``machine`` probe it also reports ``others``: the machine's busy time less the
    client's and the other probes', i.e. what processes outside the benchmark took.
    """

    def __init__(self, probes: Probes) -> None:
        """Take the starting readings."""
        self.probes: dict[str, CpuProbe] = {"client": time.process_time, **probes}
        self.start = {name: probe() for name, probe in self.probes.items()}

    def percent(self, elapsed_s: float) -> dict[str, float]:
        """Average CPU use since the start, in % of one core."""
        if elapsed_s <= 0:
            return {}
        used = {name: probe() - self.start[name] for name, probe in self.probes.items()}
        pct = {name: round(100.0 * value / elapsed_s, 1) for name, value in used.items()}
        if MACHINE in pct:
            machine = pct.pop(MACHINE)
            pct["others"] = round(max(machine - sum(pct.values()), 0.0), 1)
        return pct


@dataclass(frozen=True)
class Target:
    """An OpenAI-compatible endpoint to load."""

    name: str
    base_url: str  # ends in /v1
    api_key: str
    model: str

    @property
    def chat_url(self) -> str:
        """The chat completions URL."""
        return f"{self.base_url}/chat/completions"

    def headers(self) -> dict[str, str]:
        """Request headers, with the bearer key."""
        return {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}

    def body(self, *, stream: bool) -> bytes:
        """The request body every client sends."""
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": "Say hello in 64 tokens."}],
            "max_tokens": STREAM_TOKENS,
        }
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return orjson.dumps(payload)


@dataclass(kw_only=True)
class _Failures:
    """Failed calls: how many, and a few distinct messages."""

    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        """Count one failed call, keeping a few distinct messages."""
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES and message not in self.error_samples:
            self.error_samples.append(message[:300])


@dataclass
class Result(_Failures):
    """What one scenario measured on one target."""

    scenario: str
    target: str
    concurrency: int
    ok: int = 0
    elapsed_s: float = 0.0
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    cpu_pct: dict[str, float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    ttfts_ms: list[float] = field(default_factory=list, repr=False)

    def finish(self, elapsed_s: float, cpu: CpuWindow) -> None:
        """Compute the summary figures."""
        self.elapsed_s = elapsed_s
        self.ok = len(self.latencies_ms)
        self.rps = self.ok / elapsed_s if elapsed_s > 0 else 0.0
        self.p50_ms = percentile(self.latencies_ms, 50)
        self.p99_ms = percentile(self.latencies_ms, 99)
        self.ttft_p50_ms = percentile(self.ttfts_ms, 50)
        self.ttft_p99_ms = percentile(self.ttfts_ms, 99)
        self.cpu_pct = cpu.percent(elapsed_s)

    def summary(self) -> dict[str, Any]:
        """The JSON-ready figures (without the raw samples)."""
        keys = (
            "scenario", "target", "concurrency", "ok", "errors", "elapsed_s", "rps", "p50_ms",
            "p99_ms", "ttft_p50_ms", "ttft_p99_ms", "cpu_pct",
            "error_samples",
        )  # fmt: skip
        out = {key: getattr(self, key) for key in keys}
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 3)
        return out


def percentile(values: list[float], pct: float) -> float | None:
    """The ``pct`` percentile of ``values`` with linear interpolation, None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


async def _chat_once(
    session: aiohttp.ClientSession, target: Target, body: bytes, headers: dict[str, str]
) -> str | None:
    """One non-streaming request; None when it succeeded, else the reason it failed."""
    try:
        async with session.post(target.chat_url, data=body, headers=headers) as resp:
            raw = await resp.read()
            if resp.status != 200:
                return f"HTTP {resp.status}: {raw[:200]!r}"
        data = orjson.loads(raw)
        content = data["choices"][0]["message"]["content"]
        if not isinstance(content, str) or not content:
            return "empty content"
    except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    except (KeyError, IndexError, TypeError) as exc:
        return f"malformed completion: {type(exc).__name__}: {exc}"
    return None


async def sequential(
    target: Target, requests: int, warmup: int, probes: Probes | None = None
) -> Result:
    """``requests`` non-streaming calls from one client, one after another."""
    result = Result("nonstream_seq_1", target.name, 1)
    body, headers = target.body(stream=False), target.headers()
    async with _session(1) as session:
        for _ in range(warmup):
            await _chat_once(session, target, body, headers)
        cpu, start = CpuWindow(probes or {}), time.perf_counter()
        cap = start + SEQUENTIAL_TIME_CAP_S
        for _ in range(requests):
            t0 = time.perf_counter()
            failure = await _chat_once(session, target, body, headers)
            t1 = time.perf_counter()
            if failure is None:
                result.latencies_ms.append((t1 - t0) * 1000.0)
            else:
                result.error(failure)
            if t1 > cap:
                result.error(f"stopped at the {SEQUENTIAL_TIME_CAP_S:.0f} s cap")
                break
        result.finish(time.perf_counter() - start, cpu)
    return result


@dataclass
class Paired(_Failures):
    """One client taking turns between a target and the baseline, in short runs of calls back to
    back, so both are timed at the same moments of a noisy machine and each call follows the one
    before it as in a sequential run (the first call of each run, which follows the other's, is
    not counted): their p50s differ by what the target adds, not by what the machine did
    meanwhile."""

    target: str
    baseline: str
    target_ms: list[float] = field(default_factory=list, repr=False)
    baseline_ms: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """The JSON-ready figures (without the raw samples)."""
        p50, base = percentile(self.target_ms, 50), percentile(self.baseline_ms, 50)
        return {
            "target": self.target,
            "baseline": self.baseline,
            "calls": len(self.target_ms),
            "baseline_calls": len(self.baseline_ms),
            "errors": self.errors,
            "p50_ms": None if p50 is None else round(p50, 3),
            "baseline_p50_ms": None if base is None else round(base, 3),
            "error_samples": self.error_samples,
        }


async def paired(
    target: Target, baseline: Target, calls: int, warmup: int, run_length: int = PAIRED_RUN
) -> Paired:
    """About ``calls`` non-streaming calls to each of ``target`` and ``baseline`` from one
    client, taking turns every ``run_length`` calls (target first, then baseline first)."""
    result = Paired(target.name, baseline.name)
    async with _session(1) as mine, _session(1) as theirs:
        sides = [
            (mine, target, target.body(stream=False), target.headers(), result.target_ms),
            (theirs, baseline, baseline.body(stream=False), baseline.headers(), result.baseline_ms),
        ]
        for session, where, body, headers, _times in sides:
            for _ in range(warmup):
                await _chat_once(session, where, body, headers)
        cap = time.perf_counter() + SEQUENTIAL_TIME_CAP_S
        for turn in range(max(1, -(-calls // run_length))):
            for session, where, body, headers, times in sides[:: 1 if turn % 2 == 0 else -1]:
                for index in range(run_length + 1):
                    t0 = time.perf_counter()
                    failure = await _chat_once(session, where, body, headers)
                    if failure is not None:
                        result.error(f"{where.name}: {failure}")
                    elif index > 0:
                        times.append((time.perf_counter() - t0) * 1000.0)
            if time.perf_counter() > cap:
                result.error(f"stopped at the {SEQUENTIAL_TIME_CAP_S:.0f} s cap")
                break
    return result


async def concurrent(
    target: Target, connections: int, duration_s: float, probes: Probes | None = None
) -> Result:
    """Non-streaming calls over ``connections`` connections for ``duration_s``."""
    result = Result(f"nonstream_conc_{connections}", target.name, connections)
    body, headers = target.body(stream=False), target.headers()
    issued = 0

    async def worker(session: aiohttp.ClientSession, deadline: float, record: bool) -> None:
        nonlocal issued
        while time.perf_counter() < deadline and issued < MAX_REQUESTS:
            issued += 1
            t0 = time.perf_counter()
            failure = await _chat_once(session, target, body, headers)
            if not record:
                continue
            if failure is None:
                result.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
            else:
                result.error(failure)

    async with _session(connections) as session:
        await _run_workers(session, worker, connections, 0.5, record=False)  # warm-up
        issued = 0
        cpu, start = CpuWindow(probes or {}), time.perf_counter()
        await _run_workers(session, worker, connections, duration_s, record=True)
        result.finish(time.perf_counter() - start, cpu)
    return result


class _StreamCheck:
    """Parses one SSE response as it arrives: content chunks, first-content time, [DONE]."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.ttft: float | None = None
        self.content_chunks = 0
        self.done = False
        self.buffer = b""

    def feed(self, piece: bytes) -> str | None:
        """Take the next bytes; return why the stream is invalid, or None."""
        self.buffer += piece
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            if self.done:
                return "data after [DONE]"
            data = line[5:].strip()
            if data == b"[DONE]":
                self.done = True
                continue
            choices = orjson.loads(data).get("choices") or ()
            if choices and (choices[0].get("delta") or {}).get("content"):
                self.content_chunks += 1
                if self.ttft is None:
                    self.ttft = time.perf_counter() - self.t0
        return None

    def verdict(self) -> tuple[float, float] | str:
        """(TTFT s, total s) when the stream was complete, else what was wrong."""
        total = time.perf_counter() - self.t0
        if not self.done:
            return f"stream ended without [DONE] after {self.content_chunks} content chunks"
        if self.content_chunks != STREAM_TOKENS or self.ttft is None:
            return f"{self.content_chunks} content chunks, expected {STREAM_TOKENS}"
        return self.ttft, total


async def _stream_once(
    session: aiohttp.ClientSession,
    target: Target,
    body: bytes,
    headers: dict[str, str],
) -> tuple[float, float] | str:
    """One streaming request: (TTFT s, total s) on success, else the reason it failed."""
    check = _StreamCheck(time.perf_counter())
    try:
        async with session.post(target.chat_url, data=body, headers=headers) as resp:
            if resp.status != 200:
                return f"HTTP {resp.status}: {(await resp.read())[:200]!r}"
            async for piece in resp.content.iter_any():
                failure = check.feed(piece)
                if failure is not None:
                    return failure
    except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    except (AttributeError, TypeError) as exc:
        return f"malformed chunk: {type(exc).__name__}: {exc}"
    return check.verdict()


async def streaming(
    target: Target, clients: int, duration_s: float, probes: Probes | None = None
) -> Result:
    """Streaming calls (64 tokens) from ``clients`` concurrent clients for ``duration_s``."""
    result = Result(f"stream_conc_{clients}", target.name, clients)
    body, headers = target.body(stream=True), target.headers()
    issued = 0

    async def worker(session: aiohttp.ClientSession, deadline: float, record: bool) -> None:
        nonlocal issued
        while time.perf_counter() < deadline and issued < MAX_REQUESTS:
            issued += 1
            outcome = await _stream_once(session, target, body, headers)
            if not record:
                continue
            if isinstance(outcome, str):
                result.error(outcome)
            else:
                result.ttfts_ms.append(outcome[0] * 1000.0)
                result.latencies_ms.append(outcome[1] * 1000.0)

    async with _session(clients) as session:
        await _run_workers(session, worker, clients, 0.5, record=False)  # warm-up
        issued = 0
        cpu, start = CpuWindow(probes or {}), time.perf_counter()
        await _run_workers(session, worker, clients, duration_s, record=True)
        result.finish(time.perf_counter() - start, cpu)
    return result


async def _run_workers(
    session: aiohttp.ClientSession,
    worker: Worker,
    count: int,
    duration_s: float,
    *,
    record: bool,
) -> None:
    """Run ``count`` workers until ``duration_s`` has passed; in-flight requests finish."""
    deadline = time.perf_counter() + duration_s
    tasks = [asyncio.create_task(worker(session, deadline, record)) for _ in range(count)]
    # Each worker stops issuing at the deadline; its last request is bounded by its timeout.
    done, pending = await asyncio.wait(tasks, timeout=duration_s + REQUEST_TIMEOUT_S + 5)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()
