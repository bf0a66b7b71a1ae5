"""Ratios, the rich table, the JSON file and the PNG plot of an instruction benchmark run.

The report is one dict: ``meta``, ``transports`` (per transport: ``status`` and ``note``),
``rows`` (one :meth:`load.Result.summary` per transport, mode and operation, with ``transport``;
``scenario`` is the mode, ``target`` the operation) and ``derived`` (each instruction row's
ratios to its baseline, the one-line readings, noise warnings).
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

MODES: dict[str, int] = {"seq_1": 1, "conc_32": 32}  # mode: requests in flight
MODE_LABELS = {"seq_1": "1 client, sequential", "conc_32": "32 in flight"}
MODE_COLUMN = {"seq_1": "1, sequential", "conc_32": "32"}  # the table's "in flight" column
OPERATIONS = ("baseline", "USER_LIST", "CHAT_CREATE")
TRANSPORTS = ("http", "rabbitmq")
BASELINE_LABELS = {"http": "GET /v1/me", "rabbitmq": "echo RPC"}
BASELINES = {
    "http": "GET /v1/me (authenticated, cheapest core route), same aiohttp client and concurrency",
    "rabbitmq": (
        "the same InstructionClient against an aio-pika echo server in a process of its own:"
        " durable queue, the consumer's prefetch, persistent confirmed reply to reply_to with"
        " the correlation_id, then ack; i.e. the consumer's AMQP work without the core"
    ),
}
CPU_COLUMNS = ("client", "core", "consumer", "echo", "broker", "others")
CPU_HEADER = "CPU % client/core/\nconsumer/echo/\nbroker/others"
NOISY_OTHERS_PCT = 15.0  # CPU % of one core taken by processes outside the benchmark

Report = dict[str, Any]
Row = dict[str, Any]


def new_report(*, quick: bool, settings: dict[str, Any]) -> Report:
    """The report skeleton with the run's metadata."""
    versions = {}
    for dist in ("patchbay", "aiohttp", "aio-pika"):
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
            "baselines": BASELINES,
            "load_client": (
                "in the benchmark process on uvloop: aiohttp (one keep-alive session per mode,"
                " pool = concurrency) and patchbay.sdk.InstructionClient (one connection, many"
                " requests in flight). cpu_pct: % of one core used by the client, the core, the"
                " consumer, the echo server, the broker and others (outside the benchmark: noise)"
            ),
            "versions": versions,
        },
        "transports": {},
        "rows": [],
    }


def label(transport: str, operation: str) -> str:
    """How tables name an operation: the instruction, or what the baseline is."""
    return BASELINE_LABELS[transport] if operation == "baseline" else operation


def line(row: Row) -> str:
    """One row as a progress line."""
    return (
        f"  {row['transport']:<8} {label(row['transport'], row['target']):<11}"
        f" {MODE_LABELS[row['scenario']]:<20} {row['rps']:>8,.0f} /s"
        f"  p50 {fmt_ms(row['p50_ms']):>6} ms  p99 {fmt_ms(row['p99_ms']):>6} ms"
        f"  errors {row['errors']}"
    )


def _find(report: Report, transport: str, mode: str, operation: str) -> Row | None:
    for row in report["rows"]:
        if (row["transport"], row["scenario"], row["target"]) == (transport, mode, operation):
            found: Row = row
            return found
    return None


def _ratio(mine: float | None, base: float | None) -> float | None:
    return round(mine / base, 3) if mine is not None and base else None


def derive(report: Report) -> None:
    """Add each instruction row's ratios to its baseline, the readings and noise warnings."""
    for row in report["rows"]:
        base = _find(report, row["transport"], row["scenario"], "baseline")
        if row["target"] == "baseline" or base is None:
            continue
        row["vs_baseline"] = {
            key: _ratio(row[key], base[key]) for key in ("rps", "p50_ms", "p99_ms")
        }
        if row["p50_ms"] is not None and base["p50_ms"] is not None:
            row["vs_baseline"]["added_p50_ms"] = round(row["p50_ms"] - base["p50_ms"], 3)
    report["derived"] = {
        "readings": [r for t in TRANSPORTS if (r := _reading(report, t)) is not None],
        "noise_warnings": _noise_warnings(report),
    }


def _reading(report: Report, transport: str) -> str | None:
    """One line: the instructions' rate and p50 as multiples of the baseline's."""
    rows = {mode: [_find(report, transport, mode, op) for op in OPERATIONS[1:]] for mode in MODES}
    ratios: dict[str, list[str]] = {}
    for mode, key in (("conc_32", "rps"), ("seq_1", "p50_ms")):
        found = [row for row in rows[mode] if row is not None and "vs_baseline" in row]
        if len(found) != len(OPERATIONS) - 1 or any(r["vs_baseline"][key] is None for r in found):
            return None
        ratios[mode] = [f"{row['target']} {row['vs_baseline'][key]:.2f}x" for row in found]
    return (
        f"{transport} vs {BASELINE_LABELS[transport]}:"
        f" rate at 32 in flight {', '.join(ratios['conc_32'])};"
        f" p50 at 1 client {', '.join(ratios['seq_1'])}"
    )


def _noise_warnings(report: Report) -> list[str]:
    lines = []
    for row in report["rows"]:
        others = row["cpu_pct"].get("others", 0.0)
        if others > NOISY_OTHERS_PCT:
            lines.append(
                f"noisy: other processes used {others:.0f}% of a core during {row['transport']}"
                f" {label(row['transport'], row['target'])}, {MODE_LABELS[row['scenario']]}"
            )
    return lines


def _with_ratio(text: str, ratio: float | None) -> str:
    return f"{text} [dim]({ratio:.2f}x)[/dim]" if ratio is not None else text


def _cells(row: Row) -> list[str]:
    ratios = row.get("vs_baseline", {})
    cpu = "/".join(
        f"{row['cpu_pct'][key]:.0f}" if key in row["cpu_pct"] else "-" for key in CPU_COLUMNS
    )
    return [
        row["transport"],
        MODE_COLUMN[row["scenario"]],
        label(row["transport"], row["target"]),
        _with_ratio(f"{row['rps']:,.0f}", ratios.get("rps")),
        _with_ratio(fmt_ms(row["p50_ms"]), ratios.get("p50_ms")),
        _with_ratio(fmt_ms(row["p99_ms"]), ratios.get("p99_ms")),
        f"[red]{row['errors']}[/red]" if row["errors"] else "0",
        cpu,
    ]


def table(report: Report) -> Table:
    """Every row, a section per transport and mode; ratios are to the baseline just above."""
    out = Table(title="Instruction API benchmark (loopback, one run; (x) = ratio to baseline)")
    for header in ("transport", "in flight", "instruction"):
        out.add_column(header)
    for header in ("instr/s", "p50 ms", "p99 ms", "errors"):
        out.add_column(header, justify="right")
    out.add_column(CPU_HEADER, justify="right", no_wrap=True)
    for transport in TRANSPORTS:
        for mode in MODES:
            rows = [_find(report, transport, mode, op) for op in OPERATIONS]
            for row in rows:
                if row is not None:
                    out.add_row(*_cells(row))
            if any(rows):
                out.add_section()
    return out


def print_report(console: Console, report: Report) -> None:
    """The table, the readings, then warnings, failures and error samples."""
    console.print(table(report))
    for reading in report["derived"]["readings"]:
        console.print(escape(reading))
    warnings = report["derived"]["noise_warnings"]
    if len(warnings) > 3:  # the JSON keeps them all
        warnings = [
            f"noisy: other processes used over {NOISY_OTHERS_PCT:.0f}% of a core in"
            f" {len(warnings)} of {len(report['rows'])} scenarios (cpu_pct 'others' in the JSON)"
        ]
    for warning in warnings:
        console.print(f"[yellow]{escape(warning)}[/yellow]")
    for transport, entry in report["transports"].items():
        if entry["status"] != "ok":
            console.print(f"[red]{transport}: {escape(entry['note'].splitlines()[0])}[/red]")
    for row in report["rows"]:
        for sample in row.get("error_samples", []):
            what = f"{row['transport']} {row['target']} {row['scenario']}"
            console.print(f"[dim]{escape(what)} error: {escape(sample)}[/dim]")


def _bar_labels(rows: list[Row | None], key: str, ratio_key: str) -> list[str]:
    labels = []
    for row in rows:
        if row is None or row[key] is None:
            labels.append("")
            continue
        value = f"{row[key]:,.0f}" if key == "rps" else fmt_ms(row[key])
        ratio = row.get("vs_baseline", {}).get(ratio_key)
        labels.append(value if ratio is None else f"{value}\n({ratio:.2f}x)")
    return labels


def _panel(ax: Any, report: Report, mode: str, key: str) -> None:
    """Grouped bars, a group per transport and a bar per operation (p99 as a whisker)."""
    width = 0.8 / len(OPERATIONS)
    for i, operation in enumerate(OPERATIONS):
        rows = [_find(report, transport, mode, operation) for transport in TRANSPORTS]
        xs = [t + (i - 1) * width for t in range(len(TRANSPORTS))]
        ys = [row[key] or 0.0 if row else 0.0 for row in rows]
        whiskers = None
        if key == "p50_ms":
            high = [(row["p99_ms"] or 0.0) - (row[key] or 0.0) if row else 0.0 for row in rows]
            whiskers = [[0.0] * len(rows), [max(h, 0.0) for h in high]]
        name = "baseline (GET /v1/me | echo RPC)" if operation == "baseline" else operation
        bars = ax.bar(xs, ys, width, label=name, yerr=whiskers, capsize=3)
        ax.bar_label(bars, labels=_bar_labels(rows, key, key), fontsize=7)
    ax.set_xticks(range(len(TRANSPORTS)), ["HTTP", "RabbitMQ"])
    ax.margins(y=0.2)


def plot(path: Path, report: Report) -> str | None:
    """Throughput at 32 in flight and latency at 1 client; None, or why there is no plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    fig, (ax_rps, ax_lat) = plt.subplots(1, 2, figsize=(12, 5))
    _panel(ax_rps, report, "conc_32", "rps")
    ax_rps.set_ylabel("instructions / s")
    ax_rps.set_title("Throughput, 32 in flight (x = ratio to baseline)")
    ax_rps.legend(fontsize=8, loc="upper right")
    _panel(ax_lat, report, "seq_1", "p50_ms")
    ax_lat.set_ylabel("ms (bar p50, whisker p99)")
    ax_lat.set_title("Round-trip latency, 1 client")
    meta = report["meta"]
    fig.suptitle(f"patchbay instruction API, {meta['started_at']} ({meta['mode']})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
