"""`patchbay helper run|builtin|builtins`: serve a helper, registered with the core while it runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from pydantic import ValidationError

from patchbay.cli.context import State, console, errors, print_table, settings_of
from patchbay.config import Settings
from patchbay.logging import configure_logging

if TYPE_CHECKING:
    from patchbay.helpers.sdk import Helper

helper_app = typer.Typer(
    help="Run helpers: services that give models tools and turn files into text.",
    no_args_is_help=True,
)

HOST = typer.Option("127.0.0.1", help="the address to listen on")
URL = typer.Option(None, help="how the core reaches this helper; default http://HOST:PORT")
CORE = typer.Option(None, help="the core to register with; default: the configured core")
KEY = typer.Option(None, help="the helper registration key; default: this installation's")
NO_REGISTER = typer.Option(False, "--no-register", help="serve without registering")


@helper_app.callback()
def _settings(ctx: typer.Context) -> None:
    if ctx.obj is None:  # run on its own (python -m patchbay.cli.helpers), not under `patchbay`
        try:
            ctx.obj = State(settings=Settings())
        except ValidationError as exc:
            errors.print(f"[red]Invalid configuration:[/] {exc}")
            raise typer.Exit(2) from exc


@helper_app.command("run")
def run(
    ctx: typer.Context,
    target: str = typer.Argument(
        ..., help="module:attribute of a patchbay.helpers.Helper (or of a function making one)"
    ),
    port: int = typer.Option(8800, help="the port to listen on"),
    host: str = HOST,
    url: str | None = URL,
    core: str | None = CORE,
    key: str | None = KEY,
    no_register: bool = NO_REGISTER,
    app_dir: Path = typer.Option(
        Path("."), help="where to import the module from (as uvicorn's --app-dir)"
    ),
) -> None:
    """Serve a helper written with the SDK; it registers with the core until it stops."""
    from patchbay.helpers.runner import load_helper

    sys.path.insert(0, str(app_dir.resolve()))  # the `patchbay` script does not add the cwd
    try:
        helper = load_helper(target)
    except (ImportError, ValueError, TypeError) as exc:
        errors.print(f"[red]Cannot load {target}:[/] {exc}")
        raise typer.Exit(2) from exc
    _serve(ctx, helper, host, port, url, core, key, no_register)


@helper_app.command("builtin")
def builtin(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="documents, ocr, speech or video"),
    port: int | None = typer.Option(None, help="the port to listen on; default: the helper's"),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="KEY=VALUE for the helper's options, e.g. -o model=tiny.en"
    ),
    host: str = HOST,
    url: str | None = URL,
    core: str | None = CORE,
    key: str | None = KEY,
    no_register: bool = NO_REGISTER,
) -> None:
    """Serve one of the built-in, offline to-text helpers."""
    from patchbay.helpers.builtin import BUILTINS, create_builtin

    if name not in BUILTINS:
        errors.print(f"[red]No built-in helper {name!r}.[/] Choose one of: {', '.join(BUILTINS)}")
        raise typer.Exit(2)
    try:
        configured = settings_of(ctx).helpers.builtin_options.get(name, {})
        helper = create_builtin(name, {**configured, **parse_options(option)})
    except (ValueError, ImportError) as exc:  # pydantic's ValidationError is a ValueError
        errors.print(f"[red]Cannot start the {name} helper:[/] {exc}")
        if isinstance(exc, ImportError):
            errors.print("Install the extra: pip install 'patchbay[helpers]'")
        raise typer.Exit(2) from exc
    _serve(ctx, helper, host, port or BUILTINS[name].port, url, core, key, no_register)


@helper_app.command("builtins")
def builtins() -> None:
    """List the built-in helpers and their default ports."""
    from patchbay.helpers.builtin import BUILTINS

    rows: list[list[object]] = [[b.name, b.port, b.summary] for b in BUILTINS.values()]
    print_table("Built-in helpers", ["name", "port", "converts"], rows)


def parse_options(pairs: list[str]) -> dict[str, object]:
    """`["model=tiny.en", "speech.beam_size=5"]` → `{"model": "tiny.en", "speech": {...}}`;
    values that read as JSON (numbers, true, null) are taken as such."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r}: write options as KEY=VALUE")
        try:
            value: object = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, leaf = key.split(".")
        section = options
        for parent in parents:
            child = section.setdefault(parent, {})
            if not isinstance(child, dict):
                raise typer.BadParameter(f"{key!r}: {parent} is already a value")
            section = child
        section[leaf] = value
    return options


def _serve(
    ctx: typer.Context,
    helper: Helper,
    host: str,
    port: int,
    url: str | None,
    core: str | None,
    key: str | None,
    no_register: bool,
) -> None:
    from patchbay.helpers.runner import Serving, run_helper

    settings = settings_of(ctx)
    configure_logging(settings.log, module=f"helper-{helper.name}")
    serving = Serving(host=host, port=port, url=url)
    if not no_register:
        serving = Serving(
            host=host,
            port=port,
            url=url,
            core_url=core or settings.core.base_url,
            key=key or settings.helpers.key(settings.installation_secret()),
        )
    target = "without registering" if no_register else f"registering with {serving.core_url}"
    console.print(f"helper {helper.name} at {serving.base_url}, {target}")
    run_helper(helper, serving, log_level=settings.log.level.lower())


if __name__ == "__main__":
    helper_app()
