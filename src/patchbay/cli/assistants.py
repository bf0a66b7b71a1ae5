"""`patchbay assistants …`: store assistant templates (seed 002) under a name, list and remove them."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError
from rich.markup import escape

from patchbay.cli.context import console, errors, print_table, run_with_core, settings_of
from patchbay.client import CoreClient
from patchbay.schemas.assistants import AssistantCreate, AssistantRead, AssistantTemplate

assistants_app = typer.Typer(help="Named assistant templates.", no_args_is_help=True)


@assistants_app.command("list")
def list_assistants(ctx: typer.Context) -> None:
    """The stored assistants."""

    async def action(client: CoreClient) -> list[AssistantRead]:
        return await client.call_as(list[AssistantRead], "GET", "/v1/assistants")

    found = run_with_core(settings_of(ctx), action)
    print_table(
        "assistants",
        ["name", "streams", "models", "description"],
        [
            [
                a.name,
                len(a.template.streams),
                ", ".join(s.settings.model or "default" for s in a.template.streams),
                a.description,
            ]
            for a in found
        ],
    )


@assistants_app.command("add")
def add_assistant(
    ctx: typer.Context,
    name: str,
    template: Path = typer.Argument(help='a JSON file: {"streams": [...]} as in seed 002'),
    description: str | None = typer.Option(None),
) -> None:
    """Store a template under NAME (admin); use it as model `assistant:NAME`."""
    try:
        data = AssistantCreate(
            name=name,
            description=description,
            template=AssistantTemplate.model_validate_json(template.read_bytes()),
        )
    except (OSError, ValidationError) as exc:
        errors.print(f"[red]cannot use {escape(str(template))}:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc

    async def action(client: CoreClient) -> AssistantRead:
        return await client.call_as(AssistantRead, "POST", "/v1/assistants", body=data)

    created = run_with_core(settings_of(ctx), action)
    console.print(
        f"stored assistant [bold]{created.name}[/]: use the model assistant:{created.name}"
    )


@assistants_app.command("show")
def show_assistant(ctx: typer.Context, name: str) -> None:
    """An assistant's template, as JSON."""

    async def action(client: CoreClient) -> AssistantRead:
        return await client.call_as(AssistantRead, "GET", f"/v1/assistants/{name}")

    found = run_with_core(settings_of(ctx), action)
    console.print_json(found.template.model_dump_json(exclude_none=True))


@assistants_app.command("remove")
def remove_assistant(ctx: typer.Context, name: str) -> None:
    """Remove a stored assistant (admin)."""

    async def action(client: CoreClient) -> None:
        await client.call("DELETE", f"/v1/assistants/{name}")

    run_with_core(settings_of(ctx), action)
    console.print(f"removed assistant {name}")
