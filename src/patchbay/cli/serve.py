"""Running patchbay: `up` (every module, each its own process), `core`, `channel NAME`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from types import FrameType

import anyio
import typer
import uvicorn
from rich.panel import Panel
from rich.table import Table

from patchbay.cli.context import console, errors, settings_of
from patchbay.config import Settings
from patchbay.core.hub import Hub
from patchbay.errors import PatchbayError
from patchbay.logging import configure_logging

CHANNELS = ("openai",)
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("core")(core)
    app.command("channel")(channel)


async def _prepare(settings: Settings) -> str | None:
    """Migrate and bootstrap; returns the admin key when this start generated it."""
    hub = Hub(settings)
    try:
        bootstrap = await hub.prepare()
    finally:
        await hub.db.close()
    return bootstrap.key if bootstrap else None


def _prepare_or_exit(settings: Settings) -> str | None:
    try:
        return anyio.run(_prepare, settings)
    except PatchbayError as exc:
        errors.print(f"[red]cannot open the database:[/] {exc.message}")
        raise typer.Exit(1) from exc


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


def _serve(app: object, host: str, port: int, settings: Settings) -> None:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(STOP_GRACE_S),
    )
    server = uvicorn.Server(config)
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


def channel(ctx: typer.Context, name: str = typer.Argument(help="openai")) -> None:
    """Run one channel in this process."""
    settings = settings_of(ctx)
    configure_logging(settings.log, module=f"channel-{name}")
    if name != "openai":
        errors.print(f"[red]unknown channel {name!r}[/]; channels: {', '.join(CHANNELS)}")
        raise typer.Exit(2)
    from patchbay.channels.openai_compat.app import create_app

    _serve(create_app(settings), settings.openai.host, settings.openai.port, settings)


@dataclass
class _Module:
    name: str
    args: list[str]
    host: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "patchbay.cli.main", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def healthy(self) -> bool:
        connection = HTTPConnection(self.host, self.port, timeout=1)
        try:
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def exit_reason(self) -> str:
        lines = [
            line.strip()
            for line in self.log.read_text(errors="replace").splitlines()
            if line.strip() and not line.startswith((" ", "Traceback"))
        ]
        return lines[-1] if lines else f"exited with code {self.process and self.process.poll()}"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _modules(settings: Settings) -> list[_Module]:
    logs = settings.run_dir / "logs"
    return [
        _Module("core", ["core"], settings.core.host, settings.core.port, logs / "core.log"),
        _Module(
            "openai",
            ["channel", "openai"],
            settings.openai.host,
            settings.openai.port,
            logs / "openai.log",
        ),
    ]


def _wait_healthy(modules: list[_Module]) -> _Module | None:
    """Wait until every module answers its health check; returns the first one that died."""
    deadline = time.monotonic() + START_TIMEOUT_S
    waiting = list(modules)
    while waiting and time.monotonic() < deadline:
        for module in list(waiting):
            if module.exited():
                return module
            if module.healthy():
                waiting.remove(module)
        time.sleep(0.1)
    return waiting[0] if waiting else None


def up(ctx: typer.Context) -> None:
    """Start the core and the OpenAI channel, each its own process; Ctrl-C stops them."""
    settings = settings_of(ctx)
    key = _prepare_or_exit(settings)
    modules = _modules(settings)
    stopping = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for module in modules:
            module.start()
        failed = _wait_healthy(modules)
        if failed is not None:
            errors.print(f"[red]{failed.name} did not start:[/] {failed.exit_reason()}")
            raise typer.Exit(1)
        _show_table(modules, settings)
        if key:
            _show_admin_key(key)
        console.print("Ctrl-C stops everything.")
        while not stopping:
            for module in modules:
                if module.exited():
                    errors.print(f"[red]{module.name} stopped:[/] {module.exit_reason()}")
                    raise typer.Exit(1)
            time.sleep(0.2)
        console.print("stopping…")
    finally:
        for module in reversed(modules):
            module.stop()


def _show_table(modules: list[_Module], settings: Settings) -> None:
    table = Table(title="patchbay is up")
    table.add_column("module")
    table.add_column("url")
    table.add_column("log")
    for module in modules:
        table.add_row(module.name, module.url, str(module.log))
    console.print(table)
    console.print(f"OpenAI base URL: [bold]{modules[1].url}/v1[/]")
    console.print(f"data: {settings.data_dir}   llm logs: {settings.llm_log_path}")
