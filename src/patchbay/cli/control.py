"""`patchbay ps`, `start`, `stop`, `restart`, `logs` and `down`: the modules `patchbay up` runs."""

from __future__ import annotations

import time
import xmlrpc.client

import typer
from rich.table import Table
from supervisor.xmlrpc import Faults

from patchbay.cli.context import console, errors, run_with_core, settings_of
from patchbay.client import CoreClient
from patchbay.schemas.status import StatusRead
from patchbay.supervisor.modules import modules
from patchbay.supervisor.supervisord import Supervisor, log_path


def register(app: typer.Typer) -> None:
    for command in (ps, start, stop, restart, logs, down, status):
        app.command(command.__name__)(command)


def _supervisor(ctx: typer.Context) -> Supervisor:
    settings = settings_of(ctx)
    supervisor = Supervisor(settings, modules(settings))
    if not supervisor.running():
        errors.print(f"patchbay is not up for {settings.data_dir}; start it with `patchbay up -d`")
        raise typer.Exit(1)
    return supervisor


def _known(supervisor: Supervisor, name: str) -> str:
    if name not in supervisor.specs:
        errors.print(f"[red]no module {name!r}[/]; modules: {', '.join(supervisor.specs)}")
        raise typer.Exit(2)
    return name


def _uptime(seconds: int) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if seconds else ""


def ps(ctx: typer.Context) -> None:
    """Each module's state, pid, uptime and restart count."""
    supervisor = _supervisor(ctx)
    table = Table()
    for column in ("module", "state", "pid", "uptime", "restarts", "url", "reason"):
        table.add_column(column)
    for state in supervisor.states():
        table.add_row(
            state.name,
            state.state,
            str(state.pid or ""),
            _uptime(state.uptime_s),
            str(state.restarts),
            supervisor.specs[state.name].url if state.name in supervisor.specs else "",
            state.reason,
        )
    console.print(table)


def _control(ctx: typer.Context, name: str, action: str) -> None:
    supervisor = _supervisor(ctx)
    _known(supervisor, name)
    try:
        getattr(supervisor.rpc(), action)(name)
    except xmlrpc.client.Fault as fault:
        # Asking for the state a module is already in is not an error worth failing over.
        if fault.faultCode not in (Faults.ALREADY_STARTED, Faults.NOT_RUNNING):
            errors.print(f"[red]{name}:[/] {fault.faultString} ({supervisor.reason(name)})")
            raise typer.Exit(1) from fault


def start(ctx: typer.Context, name: str) -> None:
    """Start a stopped module (one left stopped for crashing too)."""
    _supervisor(ctx).forget_failure(name)
    _control(ctx, name, "startProcess")
    console.print(f"{name} started")


def stop(ctx: typer.Context, name: str) -> None:
    """Stop a module (SIGTERM, then SIGKILL after the grace period)."""
    supervisor = _supervisor(ctx)
    supervisor.keep_stopped(_known(supervisor, name))
    try:
        _control(ctx, name, "stopProcess")
    except typer.Exit:  # not stopped: a crash is still followed by a restart
        supervisor.forget_stop(name)
        raise
    console.print(f"{name} stopped")


def restart(ctx: typer.Context, name: str) -> None:
    """Stop a module, then start it again."""
    _supervisor(ctx).forget_failure(name)
    _control(ctx, name, "stopProcess")
    _control(ctx, name, "startProcess")
    console.print(f"{name} restarted")


def logs(
    ctx: typer.Context,
    name: str,
    follow: bool = typer.Option(False, "-f", "--follow", help="keep printing new lines"),
    lines: int = typer.Option(50, "-n", help="how many lines from the end"),
) -> None:
    """A module's log."""
    settings = settings_of(ctx)
    names = [spec.name for spec in modules(settings)] + ["supervisord"]
    if name not in names:
        errors.print(f"[red]no module {name!r}[/]; modules: {', '.join(names)}")
        raise typer.Exit(2)
    path = log_path(settings, name)
    if not path.exists():
        errors.print(f"no log yet at {path}")
        raise typer.Exit(1)
    with path.open(errors="replace") as log:
        for line in log.readlines()[-lines:]:
            console.print(line, end="", markup=False, highlight=False)
        while follow:
            line = log.readline()
            if line:
                console.print(line, end="", markup=False, highlight=False)
            else:
                time.sleep(0.2)


def down(ctx: typer.Context) -> None:
    """Stop every module and supervisord."""
    supervisor = _supervisor(ctx)
    supervisor.shutdown()
    console.print("patchbay is down")


def status(ctx: typer.Context) -> None:
    """What the core knows of every module: up or down, and when it last reported."""

    async def action(client: CoreClient) -> StatusRead:
        return await client.status()

    report = run_with_core(settings_of(ctx), action)
    table = Table(title=f"patchbay {report.version} · {report.queue_depth} jobs waiting")
    for column in ("module", "kind", "state", "pid", "last seen", "url"):
        table.add_column(column)
    for module in report.modules:
        seen = "" if module.last_seen_s is None else f"{module.last_seen_s:.1f}s ago"
        style = "green" if module.state == "up" else "red"
        table.add_row(
            module.name,
            module.kind,
            f"[{style}]{module.state}[/]",
            str(module.pid or ""),
            seen,
            module.url or "",
        )
    console.print(table)
