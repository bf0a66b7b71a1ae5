"""Ratios, the rich tables, the JSON file and the PNG plot of a job-system benchmark run.

The report is one dict: ``meta``; ``queues`` (per scenario, ``memory`` then ``rabbitmq-N``:
``status``, ``note``, ``workers`` and, when it ran, ``result``, a :meth:`load.Result.summary`
whose ``rps`` is jobs per second, plus ``rss_mib``); ``ws`` (per client variant: ``status``,
``note`` and the channel's memory figures); ``derived`` (each RabbitMQ figure over the in-process
queue's, noise warnings).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from report import fmt_ms
from rich.console import Console
from rich.markup import escape
from rich.table import Table

BASELINE = "memory"
CPU_COLUMNS = ("client", "core", "workers", "mock", "broker", "others")
CPU_HEADER = "CPU % client/core/\nworkers/mock/\nbroker/others"
NOISY_OTHERS_PCT = 15.0  # CPU % of one core taken by processes outside the benchmark
RATIO_FIGURES = (
    ("rps", "jobs/s"),
    ("ttft_p50_ms", "TTFT p50"),
    ("ttft_p99_ms", "TTFT p99"),
    ("p50_ms", "job p50"),
    ("p99_ms", "job p99"),
)
WS_VARIANTS: dict[str, str] = {
    "deflate": "permessage-deflate offered (websockets' default, as browsers do)",
    "plain": "no compression offered",
}

Report = dict[str, Any]


def new_report(*, quick: bool, settings: dict[str, Any]) -> Report:
    """The report skeleton with the run's metadata."""
    versions = {}
    for dist in ("patchbay", "aiohttp", "aio-pika", "uvicorn", "websockets"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "meta": {
            "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "mode": "quick" if quick else "full",
            "settings": settings,
            "machine": {
                "cpus": os.cpu_count(),
                "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            "load_client": (
                "aiohttp on uvloop in the benchmark process: each client posts a streaming turn"
                " (POST /v1/turns, Accept: text/event-stream, a new chat each time) and reads its"
                " SSE events to `done`, then posts the next. jobs/s: turns completed per second;"
                " TTFT: request sent to first `running` event; p50/p99 ms: request to `done`."
                " cpu_pct: % of one core used by the client, the core, the worker processes, the"
                " mock upstream, the broker and others (outside the benchmark: noise)"
            ),
            "versions": versions,
        },
        "queues": {},
        "ws": {},
        "derived": {},
    }


def _ok_result(report: Report, key: str) -> dict[str, Any] | None:
    entry = report["queues"].get(key)
    if not entry or entry.get("status") != "ok":
        return None
    result: dict[str, Any] = entry["result"]
    return result


def derive(report: Report) -> None:
    """Each RabbitMQ scenario's figures over the in-process queue's, and noise warnings."""
    base = _ok_result(report, BASELINE)
    ratios: dict[str, dict[str, float | None]] = {}
    for key in report["queues"]:
        mine = _ok_result(report, key)
        if key == BASELINE or mine is None:
            continue
        ratios[key] = {}
        for figure, _label in RATIO_FIGURES:
            ok = base is not None and mine[figure] is not None and base[figure]
            ratios[key][figure] = round(mine[figure] / base[figure], 3) if ok else None  # type: ignore[index]
    noise = []
    for key, entry in report["queues"].items():
        others = (entry.get("result") or {}).get("cpu_pct", {}).get("others", 0.0)
        if others > NOISY_OTHERS_PCT:
            noise.append(f"noisy: other processes used {others:.0f}% of a core during {key}")
    report["derived"] = {"ratio_to_memory": ratios, "noise_warnings": noise}


def scenario_label(key: str, workers: int) -> str:
    """How tables name a scenario."""
    if key == BASELINE:
        return "in-process (baseline)"
    return f"RabbitMQ, {workers} worker{'s' if workers != 1 else ''}"


def _times(ratio: float | None) -> str:
    return f" [dim]x{ratio:.2f}[/dim]" if ratio is not None else ""


def _queue_row(key: str, entry: dict[str, Any], ratios: dict[str, Any]) -> list[str]:
    label = scenario_label(key, entry.get("workers", 0))
    row = entry.get("result")
    if entry["status"] != "ok" or row is None:
        return [label, f"[red]{entry['status']}[/red]", *["-"] * 5]
    mine = ratios.get(key, {})
    jobs = f"{row['rps']:,.1f}{_times(mine.get('rps'))}"
    ttft50 = f"{fmt_ms(row['ttft_p50_ms'])}{_times(mine.get('ttft_p50_ms'))}"
    ttft99 = f"{fmt_ms(row['ttft_p99_ms'])}{_times(mine.get('ttft_p99_ms'))}"
    total = (
        f"{fmt_ms(row['p50_ms'])}{_times(mine.get('p50_ms'))}"
        f" / {fmt_ms(row['p99_ms'])}{_times(mine.get('p99_ms'))}"
    )
    errors = f"[red]{row['errors']}[/red]" if row["errors"] else "0"
    cpu_pct = row["cpu_pct"]
    cpu = "/".join(f"{cpu_pct[c]:.0f}" if c in cpu_pct else "-" for c in CPU_COLUMNS)
    return [label, jobs, ttft50, ttft99, total, errors, cpu]


def queue_table(report: Report) -> Table:
    """Jobs/s and TTFT per scenario, with RabbitMQ's ratios to the in-process queue."""
    clients = report["meta"]["settings"]["clients"]
    table = Table(
        title=f"Streaming turns through the job queue, {clients} clients (x: over in-process)"
    )
    table.add_column("queue")
    for header in ("jobs/s", "TTFT p50 ms", "TTFT p99 ms", "job p50 / p99 ms", "errors"):
        table.add_column(header, justify="right")
    table.add_column(CPU_HEADER, justify="right")
    ratios = report["derived"].get("ratio_to_memory", {})
    for key, entry in report["queues"].items():
        table.add_row(*_queue_row(key, entry, ratios))
    return table


def ws_table(report: Report) -> Table:
    """The WebSocket channel's memory per idle connection, per client variant."""
    table = Table(title="WebSocket channel: memory per idle authenticated connection")
    table.add_column("client")
    headers = ("connections", "server fds +", "RSS before MiB", "RSS with them MiB", "KiB / conn")
    for header in (*headers, "after close MiB"):
        table.add_column(header, justify="right")
    for variant, entry in report["ws"].items():
        if entry["status"] != "ok":
            table.add_row(variant, f"[yellow]{entry['status']}[/yellow]", *["-"] * 5)
            continue
        table.add_row(
            variant,
            f"{entry['connections']:,}",
            f"{entry['fds_with'] - entry['fds_before']:,}",
            f"{entry['rss_before_kib'] / 1024:.1f}",
            f"{entry['rss_with_kib'] / 1024:.1f}",
            f"[bold]{entry['kib_per_connection']:.1f}[/bold]",
            f"{entry['rss_after_close_kib'] / 1024:.1f}",
        )
    return table


def print_report(console: Console, report: Report) -> None:
    """The tables, then the notes, error samples and noise warnings."""
    console.print(queue_table(report))
    if report["ws"]:
        console.print(ws_table(report))
    for line in report["derived"].get("noise_warnings", []):
        console.print(f"[yellow]{line}[/yellow]")
    for section in ("queues", "ws"):
        for key, entry in report[section].items():
            if entry.get("note"):
                console.print(f"[dim]{key}: {escape(entry['note'].splitlines()[0])}[/dim]")
            for sample in (entry.get("result") or {}).get("error_samples", []):
                console.print(f"[dim]{key} error: {escape(sample)}[/dim]")


def reading(report: Report) -> str:
    """One line saying what the run found."""
    parts = []
    base = _ok_result(report, BASELINE)
    if base is not None:
        parts.append(f"in-process {base['rps']:.0f} jobs/s")
    for key, figures in report["derived"].get("ratio_to_memory", {}).items():
        row = _ok_result(report, key)
        if row is not None:
            ratio = figures.get("rps")
            parts.append(
                f"{key} {row['rps']:.0f}" + (f" (x{ratio:.2f})" if ratio is not None else "")
            )
    for variant, entry in report["ws"].items():
        if entry["status"] == "ok":
            parts.append(f"ws {variant} {entry['kib_per_connection']:.0f} KiB/conn")
    return "; ".join(parts) or "nothing measured"


def _plot_queues(ax: Any, report: Report, figure: str, title: str, ylabel: str) -> None:
    keys = [k for k in report["queues"] if _ok_result(report, k) is not None]
    labels = [scenario_label(k, report["queues"][k].get("workers", 0)) for k in keys]
    labels = [label.replace("RabbitMQ, ", "RabbitMQ\n") for label in labels]
    values = [_ok_result(report, k)[figure] or 0.0 for k in keys]  # type: ignore[index]
    bars = ax.bar(range(len(keys)), values, color=[f"C{i}" for i in range(len(keys))])
    ratios = report["derived"].get("ratio_to_memory", {})
    texts = []
    for key, value in zip(keys, values, strict=True):
        ratio = ratios.get(key, {}).get(figure)
        texts.append(f"{value:,.1f}" + (f"\nx{ratio:.2f}" if ratio is not None else ""))
    ax.bar_label(bars, labels=texts, fontsize=8)
    if figure == "ttft_p50_ms":  # the tail, as markers over the median's bars
        p99 = [_ok_result(report, k)["ttft_p99_ms"] or 0.0 for k in keys]  # type: ignore[index]
        ax.scatter(range(len(keys)), p99, marker="_", s=600, color="k", label="p99")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xticks(range(len(keys)), labels, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.margins(y=0.2)


def _plot_ws(ax: Any, report: Report) -> None:
    ok = {k: e for k, e in report["ws"].items() if e["status"] == "ok"}
    if not ok:
        ax.text(0.5, 0.5, "WebSocket channel\nnot measured", ha="center", va="center")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    values = [e["kib_per_connection"] for e in ok.values()]
    bars = ax.bar(list(ok), values, color="C4")
    ax.bar_label(bars, labels=[f"{v:.1f} KiB" for v in values], fontsize=8)
    connections = next(iter(ok.values()))["connections"]
    ax.set_ylabel("KiB of channel RSS per connection")
    ax.set_title(f"WebSocket channel,\n{connections:,} idle connections", fontsize=10)
    ax.margins(y=0.2)


def plot(path: Path, report: Report) -> str | None:
    """Draw jobs/s, TTFT p50 and WS memory per connection; None, or why there is no plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    fig, (ax_jobs, ax_ttft, ax_ws) = plt.subplots(1, 3, figsize=(14, 4.8), width_ratios=(3, 3, 1.6))
    _plot_queues(ax_jobs, report, "rps", "Jobs per second (streaming turns)", "jobs / s")
    _plot_queues(ax_ttft, report, "ttft_p50_ms", "Time to first token, p50 (bars), p99", "ms")
    _plot_ws(ax_ws, report)
    meta = report["meta"]
    clients = meta["settings"]["clients"]
    fig.suptitle(
        f"patchbay job system, {clients} clients, {meta['started_at']} ({meta['mode']})",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
