"""What every command gets: the Settings built once, and a core client made from them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import typer
from rich.console import Console
from rich.table import Table

from patchbay.client import CoreClient
from patchbay.config import Settings
from patchbay.errors import PatchbayError

T = TypeVar("T")

console = Console()
errors = Console(stderr=True)


@dataclass(slots=True)
class State:
    settings: Settings


def settings_of(ctx: typer.Context) -> Settings:
    state: State = ctx.obj
    return state.settings


def core_client(settings: Settings) -> CoreClient:
    if settings.api_key is None:
        errors.print(
            "[red]No API key.[/] Set PATCHBAY_API_KEY to the key `patchbay up` printed "
            "on its first start (or one from `patchbay keys create`)."
        )
        raise typer.Exit(2)
    return CoreClient(settings.core.base_url, api_key=settings.api_key.get_secret_value())


def run_with_core(settings: Settings, action: Callable[[CoreClient], Awaitable[T]]) -> T:
    """Run `action` with a client for the core; core errors become a one-line message and exit 1."""

    async def main() -> T:
        async with core_client(settings) as client:
            return await action(client)

    try:
        return anyio.run(main)
    except PatchbayError as exc:
        errors.print(f"[red]{exc.code}:[/] {exc.message}")
        raise typer.Exit(1) from exc


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A rich table of rows; None shows as blank."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row))
    console.print(table)
