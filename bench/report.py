"""Derived figures, the rich table, the JSON file and the PNG plot of a gateway benchmark run.

The report is one dict: ``meta``, ``targets`` (per target: ``status``, ``note`` and
``scenarios``, each a :meth:`load.Result.summary`) and ``derived`` (added latency at one
client, req/s ratios of patchbay over LiteLLM against their targets).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

SCENARIOS: dict[str, str] = {
    "nonstream_seq_1": "non-streaming, 1 client, sequential",
    "nonstream_conc_64": "non-streaming, 64 connections",
    "stream_conc_32": "streaming 64 tokens, 32 clients",
}
BASELINE = "mock"
# (scenario, required patchbay req/s over LiteLLM req/s)
RATIO_TARGETS: tuple[tuple[str, float], ...] = (
    ("nonstream_conc_64", 8.0),
    ("stream_conc_32", 10.0),
)

ADDED_MS_TARGET = 1.0  # issue 2: added p50 latency at one client
CPU_COLUMNS = ("client", "target", "upstream", "others")
NOISY_OTHERS_PCT = 15.0  # CPU % of one core taken by processes outside the benchmark

Report = dict[str, Any]


def _scenario(report: Report, target: str, scenario: str) -> dict[str, Any] | None:
    entry = report["targets"].get(target)
    if not entry or entry.get("status") != "ok":
        return None
    found: dict[str, Any] | None = entry["scenarios"].get(scenario)
    return found


def _added_latency(report: Report, target: str) -> dict[str, Any] | None:
    """What `target` adds to the mock's p50 at one client: from the calls taking turns with the
    mock's when measured (``paired``), else from the two sequential runs (``runs``)."""
    pairs = report["targets"][target].get("paired_with_mock")
    if pairs and pairs["p50_ms"] is not None and pairs["baseline_p50_ms"]:
        p50, base, method = pairs["p50_ms"], pairs["baseline_p50_ms"], "paired"
    else:
        seq = _scenario(report, target, "nonstream_seq_1")
        base_seq = _scenario(report, BASELINE, "nonstream_seq_1")
        if not (seq and base_seq and seq["p50_ms"] is not None and base_seq["p50_ms"]):
            return None
        p50, base, method = seq["p50_ms"], base_seq["p50_ms"], "runs"
    return {
        "p50_ms": p50,
        "mock_p50_ms": base,
        "added_ms": round(p50 - base, 3),
        "ratio": round(p50 / base, 2),
        "method": method,
    }


def derive(report: Report) -> dict[str, Any]:
    """Added p50 latency at one client, share of the mock's req/s, and the ratio targets."""
    added: dict[str, Any] = {}
    share: dict[str, dict[str, float | None]] = {}
    for target in report["targets"]:
        if target == BASELINE:
            continue
        figures = _added_latency(report, target)
        if figures is not None:
            added[target] = figures
        share[target] = {}
        for scenario in SCENARIOS:
            mine, base = _scenario(report, target, scenario), _scenario(report, BASELINE, scenario)
            ok = mine is not None and base is not None and base["rps"] > 0
            share[target][scenario] = round(mine["rps"] / base["rps"], 3) if ok else None  # type: ignore[index]
    ratios = []
    for scenario, required in RATIO_TARGETS:
        pb, ll = _scenario(report, "patchbay", scenario), _scenario(report, "litellm", scenario)
        value = pb["rps"] / ll["rps"] if pb and ll and ll["rps"] > 0 else None
        ratios.append(
            {
                "scenario": scenario,
                "what": f"patchbay req/s / LiteLLM req/s, {SCENARIOS[scenario]}",
                "value": round(value, 2) if value is not None else None,
                "target": required,
                "met": (value >= required) if value is not None else None,
            }
        )
    return {
        "added_latency_1_client": added,
        "rps_share_of_mock": share,
        "ratios": ratios,
        "noise_warnings": noise_warnings(report),
    }


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _row(label: str, target: str, row: dict[str, Any]) -> list[str]:
    ttft = "-"
    if row["ttft_p50_ms"] is not None:
        ttft = f"{fmt_ms(row['ttft_p50_ms'])} / {fmt_ms(row['ttft_p99_ms'])}"
    cpu_pct = row["cpu_pct"]
    cpu = " / ".join(f"{cpu_pct[key]:.0f}" if key in cpu_pct else "-" for key in CPU_COLUMNS)
    errors = f"[red]{row['errors']}[/red]" if row["errors"] else "0"
    rps, p50, p99 = f"{row['rps']:,.0f}", fmt_ms(row["p50_ms"]), fmt_ms(row["p99_ms"])
    return [label, target, rps, p50, p99, ttft, errors, cpu]


def _table(report: Report) -> Table:
    table = Table(title="Gateway benchmark (loopback, same mock upstream, one run)")
    for header in ("scenario", "target"):
        table.add_column(header)
    for header in (
        "req/s", "p50 ms", "p99 ms", "TTFT p50 / p99 ms", "errors",
        "CPU % " + " / ".join(CPU_COLUMNS),
    ):  # fmt: skip
        table.add_column(header, justify="right")
    for scenario, label in SCENARIOS.items():
        for target in report["targets"]:
            row = _scenario(report, target, scenario)
            if row is not None:
                table.add_row(*_row(label, target, row))
        table.add_section()
    return table


def print_report(console: Console, report: Report) -> None:
    """The results table, then the derived figures and any notes."""
    console.print(_table(report))
    derived = report["derived"]
    for target, figures in derived["added_latency_1_client"].items():
        how = "taking turns" if figures["method"] == "paired" else "separate runs"
        console.print(
            f"added p50 latency, 1 client, {target}: [bold]{figures['added_ms']:+.2f} ms[/bold]"
            f" ({figures['p50_ms']:.2f} ms vs mock {figures['mock_p50_ms']:.2f} ms, {how},"
            f" x{figures['ratio']:.2f})"
        )
    for ratio in derived["ratios"]:
        if ratio["value"] is None:
            verdict = "[yellow]not measured[/yellow] (needs patchbay and LiteLLM)"
        else:
            mark = "[green]met[/green]" if ratio["met"] else "[red]not met[/red]"
            verdict = (
                f"[bold]{ratio['value']:.1f}x[/bold] (target ≥ {ratio['target']:.0f}x): {mark}"
            )
        console.print(f"{ratio['what']}: {verdict}")
    for line in derived["noise_warnings"]:
        console.print(f"[yellow]{line}[/yellow]")
    for target, entry in report["targets"].items():
        if entry.get("note"):
            note = entry["note"].splitlines()[0]  # a failure's full text was printed when it failed
            console.print(f"[dim]{target}: {escape(note)}[/dim]")
        for row in entry.get("scenarios", {}).values():
            for sample in row.get("error_samples", []):
                console.print(f"[dim]{target} {row['scenario']} error: {escape(sample)}[/dim]")
        for sample in entry.get("paired_with_mock", {}).get("error_samples", []):
            console.print(f"[dim]{target} taking turns with the mock: {escape(sample)}[/dim]")


def noise_warnings(report: Report) -> list[str]:
    """Scenarios during which other processes took a noticeable share of the CPU."""
    lines = []
    for target, entry in report["targets"].items():
        for row in entry.get("scenarios", {}).values():
            others = row["cpu_pct"].get("others", 0.0)
            if others > NOISY_OTHERS_PCT:
                lines.append(
                    f"noisy: other processes used {others:.0f}% of a core during"
                    f" {target} {SCENARIOS[row['scenario']]}"
                )
    return lines


def write_json(path: Path, report: Report) -> None:
    """Write the whole report as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")


def save(out: Path, report: Report, draw: Callable[[Path, Report], str | None]) -> str:
    """Write the report as JSON and its plot beside it (`.png`); what was written, to say."""
    write_json(out, report)
    png = out.with_suffix(".png")
    note = draw(png, report)
    return f"wrote {out}" + (f" ({note})" if note else f" and {png}")


def plot(path: Path, report: Report) -> str | None:
    """Draw req/s per scenario and target, and added latency; None or why it was skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"

    targets = [t for t, e in report["targets"].items() if e.get("status") == "ok"]
    fig, (ax_rps, ax_lat) = plt.subplots(1, 2, figsize=(13, 5), width_ratios=(3, 1.3))
    width = 0.8 / max(len(targets), 1)
    for i, target in enumerate(targets):
        xs, ys = [], []
        for j, scenario in enumerate(SCENARIOS):
            row = _scenario(report, target, scenario)
            if row is not None:
                xs.append(j + (i - (len(targets) - 1) / 2) * width)
                ys.append(max(row["rps"], 0.1))
        bars = ax_rps.bar(xs, ys, width, label=target)
        ax_rps.bar_label(bars, labels=[f"{y:,.0f}" for y in ys], fontsize=8)
    ax_rps.set_yscale("log")
    ax_rps.set_ylim(bottom=1)
    ax_rps.set_xticks(range(len(SCENARIOS)), list(SCENARIOS.values()), fontsize=9)
    ax_rps.set_ylabel("requests / s (log scale)")
    ax_rps.set_title("Throughput per scenario")
    if targets:
        ax_rps.legend()

    added = report["derived"]["added_latency_1_client"]
    if added:
        names = list(added)
        values = [added[n]["added_ms"] for n in names]
        bars = ax_lat.bar(names, values, color=[f"C{targets.index(n)}" for n in names])
        ax_lat.bar_label(
            bars,
            labels=[
                f"{v:.2f} ms (x{added[n]['ratio']:.1f})" for n, v in zip(names, values, strict=True)
            ],
        )
        ax_lat.axhline(ADDED_MS_TARGET, color="black", linestyle="--", linewidth=1, zorder=3)
        ax_lat.annotate(
            f"patchbay's target, {ADDED_MS_TARGET:g} ms",
            (0, ADDED_MS_TARGET),
            xycoords=("axes fraction", "data"),
            xytext=(3, 3),
            textcoords="offset points",
            fontsize=8,
            zorder=3,
        )
        if "paired" in {added[n]["method"] for n in names}:
            ax_lat.set_xlabel("taking turns with the mock, ten calls each", fontsize=8)
    else:
        ax_lat.text(0.5, 0.5, "no gateway measured", ha="center", va="center")
        ax_lat.set_xticks([])
        ax_lat.set_yticks([])
    ax_lat.set_ylabel("ms over the mock")
    ax_lat.set_title("Added p50 latency, 1 client")
    meta = report["meta"]
    fig.suptitle(f"patchbay gateway benchmark, {meta['started_at']} ({meta['mode']})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
