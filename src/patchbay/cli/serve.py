"""Running patchbay: `up` (every module under supervisord), `core`, `channel NAME`."""

from __future__ import annotations

import signal
import stat
import subprocess
import time
from pathlib import Path
from types import FrameType

import anyio
import typer
import uvicorn
from rich.panel import Panel
from rich.table import Table

from patchbay import heap
from patchbay.cli.context import console, errors, settings_of
from patchbay.config import Settings
from patchbay.errors import PatchbayError
from patchbay.logging import configure_logging
from patchbay.supervisor.modules import modules
from patchbay.supervisor.supervisord import Supervisor, log_path, port_taken

CHANNELS = ("openai", "instructions", "ws", "web")
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("core")(core)
    app.command("channel")(channel)


async def _prepare(settings: Settings) -> str | None:
    """Migrate and bootstrap; returns the admin key when this start generated it."""
    from patchbay.core.hub import Hub  # the core's imports are heavy; commands like `ps` skip them

    hub = Hub(settings)
    try:
        bootstrap = await hub.prepare()
    finally:
        await hub.db.close()
    return bootstrap.key if bootstrap else None


def _prepare_or_exit(settings: Settings) -> str | None:
    for path, mode in _made_private(settings.data_dir):
        errors.print(f"[yellow]made {path} yours alone[/] (it was {mode:04o})")
    try:
        return anyio.run(_prepare, settings)
    except PatchbayError as exc:
        errors.print(f"[red]cannot open the database:[/] {exc.message}")
        raise typer.Exit(1) from exc


def _made_private(data_dir: Path) -> list[tuple[Path, int]]:
    """The data directory and the files in it that others could read (made before patchbay set
    its umask), with their modes then, after taking the others' and the group's access away."""
    if not data_dir.is_dir():
        return []
    changed = []
    for path in (data_dir, *(child for child in data_dir.iterdir() if child.is_file())):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(mode & 0o700)
            changed.append((path, mode))
    return changed


def _show_admin_key(key: str) -> None:
    console.print(
        Panel(
            f"[bold]{key}[/]\n\nThis is the admin API key. It is shown once and stored only as a "
            "hash:\nkeep it now. Use it as the OpenAI API key, or `export PATCHBAY_API_KEY=…` "
            "for the CLI.",
            title="first start",
            border_style="yellow",
        )
    )


def _serve(
    app: object, host: str, port: int, settings: Settings, *, ws_max_size: int = 16 * 1024 * 1024
) -> None:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        # uvicorn's proxy headers (which trust 127.0.0.1 unless told otherwise) stay off: the one
        # place that needs the client, the helper registry, reads X-Forwarded-For itself and only
        # from PATCHBAY_CORE__TRUSTED_PROXIES, and the middleware costs every request.
        proxy_headers=False,
        timeout_graceful_shutdown=int(STOP_GRACE_S),
        ws_max_size=ws_max_size,
    )
    server = uvicorn.Server(config)
    heap.settle()  # the app and its imports are built: see `heap`
    server.run()
    if not server.started:
        raise typer.Exit(1)


def core(ctx: typer.Context) -> None:
    """Run the core (API, store, jobs) in this process."""
    from patchbay.api.app import create_app

    settings = settings_of(ctx)
    configure_logging(settings.log, module="core")
    key = _prepare_or_exit(settings)
    if key:
        _show_admin_key(key)
    _serve(create_app(settings), settings.core.host, settings.core.port, settings)


def channel(
    ctx: typer.Context, name: str = typer.Argument(help="openai | instructions | ws | web")
) -> None:
    """Run one channel in this process."""
    settings = settings_of(ctx)
    configure_logging(settings.log, module=f"channel-{name}")
    if name not in CHANNELS:
        _serve_plugin_channel(settings, name)
        return
    if name == "instructions":
        _consume_instructions(settings)
        return
    if name == "ws":
        _serve_ws(settings)
        return
    if name == "web":
        _serve_web(settings)
        return
    from patchbay.channels.openai_compat.app import create_app

    _serve(create_app(settings), settings.openai.host, settings.openai.port, settings)


def _serve_plugin_channel(settings: Settings, name: str) -> None:
    """A channel registered through the `register_channels` hook (built in, or a package's)."""
    from patchbay.channels.base import channel_settings
    from patchbay.channels.runner import create_app
    from patchbay.plugins.manager import build_plugin_manager, channel_classes

    found = channel_classes(build_plugin_manager())
    if name not in found:
        known = ", ".join([*CHANNELS, *sorted(found)])
        errors.print(f"[red]unknown channel {name!r}[/]; channels: {known}")
        raise typer.Exit(2)
    own = channel_settings(found[name], dict(settings.channels.get(name, {})))
    if own.port is None:
        errors.print(
            f"[red]channel {name} needs a port:[/] set PATCHBAY_CHANNELS__{name.upper()}__PORT"
        )
        raise typer.Exit(2)
    _serve(create_app(settings, found[name]), own.host, own.port, settings)


def _serve_ws(settings: Settings) -> None:
    from patchbay.channels.ws.app import create_app

    ws = settings.ws
    _serve(create_app(settings), ws.host, ws.port, settings, ws_max_size=ws.max_frame_bytes)


def _serve_web(settings: Settings) -> None:
    from patchbay.channels.web.app import create_app

    _serve(create_app(settings), settings.web.host, settings.web.port, settings)


def _consume_instructions(settings: Settings) -> None:
    if settings.rabbitmq_url is None:
        errors.print(
            "[red]the instruction channel needs RabbitMQ:[/] set PATCHBAY_RABBITMQ_URL "
            "(e.g. amqp://guest:guest@localhost/)"
        )
        raise typer.Exit(2)
    from patchbay.channels.instructions.runner import serve

    try:
        anyio.run(serve, settings, backend_options={"use_uvloop": True})
    except ConnectionError as exc:
        errors.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc


def up(
    ctx: typer.Context,
    detach: bool = typer.Option(False, "-d", "--detach", help="run in the background"),
) -> None:
    """Start every module, each its own process under supervisord; Ctrl-C stops them all."""
    settings = settings_of(ctx)
    stop = _StopSignal()  # before anything starts: no signal is lost
    key = _prepare_or_exit(settings)
    specs = modules(settings)
    supervisor = Supervisor(settings, specs)
    if supervisor.running():
        errors.print(f"[red]patchbay is already up[/] for {settings.data_dir}: see `patchbay ps`")
        raise typer.Exit(1)
    for spec in specs:
        if (taken := port_taken(spec)) is not None:
            errors.print(f"[red]{spec.name} did not start:[/] {taken} (another program's)")
            _keep(key)
            raise typer.Exit(1)
    try:
        process = supervisor.launch(foreground=not detach)
    except RuntimeError as exc:
        errors.print(f"[red]patchbay did not start:[/] {exc}")
        _keep(key)
        raise typer.Exit(1) from exc
    failed = supervisor.wait_ready(START_TIMEOUT_S, stop=lambda: stop.set)
    if stop.set:  # Ctrl-C while the modules start
        console.print("stopping…")
        supervisor.shutdown(None if detach else process)
        _keep(key)
        raise typer.Exit(130)
    if failed is not None:
        errors.print(f"[red]{failed.name} did not start:[/] {failed.reason or failed.state}")
        supervisor.shutdown(None if detach else process)
        _keep(key)
        raise typer.Exit(1)
    _show_table(supervisor, settings)
    if key:
        _show_admin_key(key)
    if detach:
        console.print(
            "running in the background: `patchbay ps`, `patchbay logs NAME`, `patchbay down`"
        )
        return
    console.print("Ctrl-C stops everything.")
    _stay_up(supervisor, process, stop)


def _keep(key: str | None) -> None:
    """A first start that failed made the admin's key all the same: it is shown now, or never."""
    if key:
        _show_admin_key(key)


class _StopSignal:
    """Turns SIGINT and SIGTERM into a flag the foreground loop checks."""

    def __init__(self) -> None:
        self.set = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.set = True


def _stay_up(supervisor: Supervisor, process: subprocess.Popen[bytes], stop: _StopSignal) -> None:
    """Report modules that fail for good until a signal comes, then stop everything."""
    reported: set[str] = set()
    try:
        while not stop.set and process.poll() is None:
            time.sleep(0.5)
            for state in supervisor.states():
                if state.state in ("FATAL", "FAILED") and state.name not in reported:
                    reported.add(state.name)
                    errors.print(f"[red]{state.name} failed:[/] {state.reason}")
    finally:
        console.print("stopping…")
        supervisor.shutdown(process)


def _show_table(supervisor: Supervisor, settings: Settings) -> None:
    table = Table(title="patchbay is up")
    for column in ("module", "state", "pid", "url", "log"):
        table.add_column(column)
    for state in supervisor.states():
        spec = supervisor.specs[state.name]
        log = log_path(settings, state.name)
        # `wait_ready` saw each module answer (or stay up past `startsecs`): supervisord may
        # still count an HTTP module's first seconds as STARTING.
        shown = "up" if state.state in ("STARTING", "RUNNING") else state.state
        table.add_row(state.name, shown, str(state.pid), spec.url, str(log))
    console.print(table)
    if "openai" in supervisor.specs:
        console.print(f"OpenAI base URL: [bold]{supervisor.specs['openai'].url}/v1[/]")
    if "ws" in supervisor.specs:
        console.print(f"WebSocket jobs: [bold]ws://{settings.ws.host}:{settings.ws.port}/ws/[/]")
    if "web" in supervisor.specs:
        console.print(f"Web chat: [bold]{supervisor.specs['web'].url}/[/]")
    console.print(f"data: {settings.data_dir}   llm logs: {settings.llm_log_path}")
