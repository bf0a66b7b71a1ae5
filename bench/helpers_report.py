"""Ratios, the rich tables, the one-line reading and the PNG plot of a helper benchmark run.

The report is one dict: ``meta``; ``tool_calls`` (``status``, ``note`` and, when it ran, ``paths``:
``direct`` and ``core``, each with ``url`` and ``scenarios``, a :meth:`load.Result.summary` per
load); ``conversions`` (``pdf`` and ``speech``: ``status``, ``note``, ``check``, ``cold_s`` and per
path the seconds of each run, their median and the ``rate`` in units per second); ``derived``
(through the core over directly, noise warnings).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import statistics
from importlib import metadata
from pathlib import Path
from typing import Any

from report import fmt_ms
from rich.console import Console
from rich.markup import escape
from rich.table import Table

CALL_SCENARIOS: dict[str, str] = {"seq_1": "1 client, sequential", "conc_16": "16 in flight"}
PATHS: dict[str, str] = {"direct": "directly", "core": "through the core"}
CONVERSIONS: dict[str, tuple[str, str]] = {  # key → (label, unit of the rate)
    "pdf": ("PDF → Markdown (documents)", "pages/s"),
    "speech": ("speech → text (speech)", "audio s/s"),
}
CPU_COLUMNS = ("client", "core", "helper", "others")
NOISY_OTHERS_PCT = 15.0  # CPU % of one core taken by processes outside the benchmark

Report = dict[str, Any]


def new_report(*, quick: bool, settings: dict[str, Any]) -> Report:
    """The report skeleton with the run's metadata."""
    versions = {}
    for dist in ("patchbay", "aiohttp", "uvicorn", "markitdown", "faster-whisper", "fpdf2"):
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
                "aiohttp on uvloop in the benchmark process, keep-alive connections. Tool calls:"
                " POST a JSON argument, read and check the answer; calls/s and p50/p99 of"
                " request-to-answer time. cpu_pct: % of one core used by the client, the core,"
                " the helper and others (outside the benchmark: noise). Conversions: one file at"
                " a time, seconds from request to answer; rate = pages or audio seconds / median"
            ),
            "versions": versions,
        },
        "tool_calls": {},
        "conversions": {},
        "derived": {},
    }


def conversion_figures(seconds: list[float], units: float) -> dict[str, Any]:
    """Per-run seconds, their median and minimum, and units per second at the median."""
    median = statistics.median(seconds)
    return {
        "runs_s": [round(s, 3) for s in seconds],
        "median_s": round(median, 3),
        "min_s": round(min(seconds), 3),
        "rate": round(units / median, 3) if median > 0 else None,
    }


def _call_row(report: Report, path: str, scenario: str) -> dict[str, Any] | None:
    paths = report["tool_calls"].get("paths") or {}
    row: dict[str, Any] | None = (paths.get(path) or {}).get("scenarios", {}).get(scenario)
    return row


def _ratio(mine: float | None, base: float | None) -> float | None:
    return round(mine / base, 3) if mine is not None and base else None


def derive(report: Report) -> None:
    """Through the core over directly, per load and per conversion; noise warnings."""
    calls: dict[str, dict[str, float | None]] = {}
    for scenario in CALL_SCENARIOS:
        core, direct = _call_row(report, "core", scenario), _call_row(report, "direct", scenario)
        if core is None or direct is None:
            continue
        calls[scenario] = {
            figure: _ratio(core[figure], direct[figure]) for figure in ("rps", "p50_ms", "p99_ms")
        }
        if core["p50_ms"] is not None and direct["p50_ms"] is not None:
            calls[scenario]["added_p50_ms"] = round(core["p50_ms"] - direct["p50_ms"], 3)
    conversions: dict[str, dict[str, float | None]] = {}
    for key, entry in report["conversions"].items():
        if "core" in entry and "direct" in entry:
            core_s, direct_s = entry["core"]["median_s"], entry["direct"]["median_s"]
            conversions[key] = {
                "time": _ratio(core_s, direct_s),
                "added_s": round(core_s - direct_s, 3),
            }
    noise = []
    for path in PATHS:
        for scenario, label in CALL_SCENARIOS.items():
            row = _call_row(report, path, scenario)
            others = (row or {}).get("cpu_pct", {}).get("others", 0.0)
            if others > NOISY_OTHERS_PCT:
                noise.append(
                    f"noisy: other processes used {others:.0f}% of a core, {path}, {label}"
                )
    report["derived"] = {
        "core_over_direct_calls": calls,
        "core_over_direct_conversions": conversions,
        "noise_warnings": noise,
    }


def _times(ratio: float | None) -> str:
    return f" [dim]x{ratio:.2f}[/dim]" if ratio is not None else ""


def tool_table(report: Report) -> Table:
    """Calls/s and latency per load and path, the core's figures with their ratio to direct."""
    table = Table(title="A trivial tool call: directly vs through the core (x: core / direct)")
    table.add_column("load")
    table.add_column("path")
    for header in ("calls/s", "p50 ms", "p99 ms", "errors", "CPU % " + "/".join(CPU_COLUMNS)):
        table.add_column(header, justify="right")
    ratios = report["derived"].get("core_over_direct_calls", {})
    for scenario, label in CALL_SCENARIOS.items():
        for path, path_label in PATHS.items():
            row = _call_row(report, path, scenario)
            if row is None:
                continue
            mine = ratios.get(scenario, {}) if path == "core" else {}
            cpu = "/".join(
                f"{row['cpu_pct'][c]:.0f}" if c in row["cpu_pct"] else "-" for c in CPU_COLUMNS
            )
            table.add_row(
                label,
                path_label,
                f"{row['rps']:,.0f}{_times(mine.get('rps'))}",
                f"{fmt_ms(row['p50_ms'])}{_times(mine.get('p50_ms'))}",
                f"{fmt_ms(row['p99_ms'])}{_times(mine.get('p99_ms'))}",
                f"[red]{row['errors']}[/red]" if row["errors"] else "0",
                cpu,
            )
        table.add_section()
    return table


def conversion_table(report: Report) -> Table:
    """Throughput of each conversion through the core and directly, one file at a time."""
    table = Table(
        title="Conversions through POST /v1/convert (median of the runs; x: core / direct)"
    )
    table.add_column("file → text (helper)")
    for header in ("size", "first call s", "core median s", "core rate", "direct rate"):
        table.add_column(header, justify="right")
    table.add_column("check")
    ratios = report["derived"].get("core_over_direct_conversions", {})
    for key, (label, unit) in CONVERSIONS.items():
        entry = report["conversions"].get(key)
        if entry is None:
            continue
        if "core" not in entry:
            colour = "yellow" if entry["status"] == "skipped" else "red"
            note = escape(entry.get("note", "").splitlines()[0] if entry.get("note") else "")
            table.add_row(label, f"[{colour}]{entry['status']}[/{colour}]", *["-"] * 4, note)
            continue
        size = "pages" if key == "pdf" else "s of audio"
        check = escape(entry["check"])
        table.add_row(
            label,
            f"{entry['units']:g} {size}",
            f"{entry['cold_s']:.2f}",
            f"{entry['core']['median_s']:.2f}{_times(ratios.get(key, {}).get('time'))}",
            f"[bold]{entry['core']['rate']:.2f}[/bold] {unit}",
            f"{entry['direct']['rate']:.2f} {unit}",
            check if entry["status"] == "ok" else f"[red]{check}[/red]",
        )
    return table


def print_report(console: Console, report: Report) -> None:
    """The tables, then the notes, error samples and noise warnings."""
    console.print(tool_table(report))
    console.print(conversion_table(report))
    for line in report["derived"].get("noise_warnings", []):
        console.print(f"[yellow]{line}[/yellow]")
    sections = {"tool calls": report["tool_calls"], **report["conversions"]}
    for key, entry in sections.items():
        if entry.get("note"):
            console.print(f"[dim]{key}: {escape(entry['note'].splitlines()[0])}[/dim]")
    for path in PATHS:
        for scenario in CALL_SCENARIOS:
            for sample in (_call_row(report, path, scenario) or {}).get("error_samples", []):
                console.print(f"[dim]{path} {scenario} error: {escape(sample)}[/dim]")


def reading(report: Report) -> str:
    """One line saying what the run found."""
    parts = []
    calls = report["derived"].get("core_over_direct_calls", {})
    if "seq_1" in calls:
        core, direct = _call_row(report, "core", "seq_1"), _call_row(report, "direct", "seq_1")
        parts.append(
            f"a tool call through the core takes {fmt_ms(core['p50_ms'])} ms p50 vs"  # type: ignore[index]
            f" {fmt_ms(direct['p50_ms'])} ms directly"  # type: ignore[index]
            f" (+{calls['seq_1']['added_p50_ms']:.2f} ms, x{calls['seq_1']['p50_ms']:.1f})"
        )
    if "conc_16" in calls:
        core, direct = _call_row(report, "core", "conc_16"), _call_row(report, "direct", "conc_16")
        parts.append(
            f"{core['rps']:,.0f} vs {direct['rps']:,.0f} calls/s with 16 in flight"  # type: ignore[index]
            f" (x{calls['conc_16']['rps']:.2f})"
        )
    for key, (_label, unit) in CONVERSIONS.items():
        entry = report["conversions"].get(key, {})
        if entry.get("status") == "ok":
            parts.append(f"{key} {entry['core']['rate']:.1f} {unit} through the core")
    return "; ".join(parts) or "nothing measured"


def _grouped_bars(
    ax: Any, groups: list[str], values: dict[str, list[float]], texts: dict[str, list[str]]
) -> None:
    width = 0.38
    for i, path in enumerate(values):
        xs = [j + (i - 0.5) * width for j in range(len(groups))]
        bars = ax.bar(xs, values[path], width, label=PATHS[path], color=f"C{i}")
        ax.bar_label(bars, labels=texts[path], fontsize=8)
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    ax.margins(y=0.2)


def _plot_calls(ax: Any, report: Report, figure: str) -> None:
    scenarios = [
        s for s in CALL_SCENARIOS if _call_row(report, "core", s) and _call_row(report, "direct", s)
    ]
    ratios = report["derived"].get("core_over_direct_calls", {})
    values: dict[str, list[float]] = {}
    texts: dict[str, list[str]] = {}
    for path in PATHS:
        rows = [_call_row(report, path, s) or {} for s in scenarios]
        values[path] = [row.get(figure) or 0.0 for row in rows]
        texts[path] = [
            (f"{v:,.0f}" if figure == "rps" else fmt_ms(v))
            + (
                f"\nx{ratios[s][figure]:.2f}"
                if path == "core" and ratios.get(s, {}).get(figure)
                else ""
            )
            for s, v in zip(scenarios, values[path], strict=True)
        ]
    _grouped_bars(ax, [CALL_SCENARIOS[s] for s in scenarios], values, texts)
    if figure == "p50_ms":  # the tail, as markers over the median's bars
        for i, path in enumerate(PATHS):
            p99 = [(_call_row(report, path, s) or {}).get("p99_ms") or 0.0 for s in scenarios]
            xs = [j + (i - 0.5) * 0.38 for j in range(len(scenarios))]
            ax.scatter(xs, p99, marker="_", s=300, color="k", label="p99" if i == 0 else None)
        ax.legend(loc="upper left", fontsize=8)
    if figure == "p50_ms":
        ax.set_yscale("log")
    ax.set_ylabel("calls / s" if figure == "rps" else "ms (log scale)")
    ax.set_title(
        "Tool calls per second" if figure == "rps" else "Tool call latency, p50 (bars), p99",
        fontsize=10,
    )


def _plot_conversions(ax: Any, report: Report) -> None:
    keys = [k for k in CONVERSIONS if report["conversions"].get(k, {}).get("status") == "ok"]
    if not keys:
        ax.text(0.5, 0.5, "no conversion measured", ha="center", va="center")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    values = {path: [report["conversions"][k][path]["rate"] for k in keys] for path in PATHS}
    texts = {path: [f"{v:.2f}" for v in values[path]] for path in PATHS}
    _grouped_bars(ax, [f"{k}\n{CONVERSIONS[k][1]}" for k in keys], values, texts)
    ax.set_ylabel("pages or audio seconds per second")
    ax.set_title("Conversion throughput, one file at a time", fontsize=10)


def plot(path: Path, report: Report) -> str | None:
    """Draw calls/s, call latency and conversion throughput; None, or why there is no plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    fig, (ax_rps, ax_lat, ax_conv) = plt.subplots(1, 3, figsize=(14, 4.8))
    _plot_calls(ax_rps, report, "rps")
    _plot_calls(ax_lat, report, "p50_ms")
    _plot_conversions(ax_conv, report)
    meta = report["meta"]
    fig.suptitle(f"patchbay helpers, {meta['started_at']} ({meta['mode']})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
