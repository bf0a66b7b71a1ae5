"""`patchbay chat "…"`: a streaming terminal chat through the core."""

from __future__ import annotations

import typer

from patchbay.cli.context import console, errors, run_with_core, settings_of
from patchbay.client import CoreClient
from patchbay.schemas.turns import TurnCreate


def chat(
    ctx: typer.Context,
    text: str = typer.Argument(..., help="what to say"),
    model: str | None = typer.Option(None, "-m", "--model", help="default: the default model"),
    chat_id: str | None = typer.Option(None, "-c", "--chat", help="continue this chat"),
) -> None:
    """Say something to a model and stream the answer."""
    turn = TurnCreate(channel="cli", text=text, model=model, chat_id=chat_id)

    async def action(client: CoreClient) -> str | None:
        async with client.stream_turn(turn) as (created, batches):
            async for batch in batches:
                for event in batch:
                    if event.type == "running" and event.delta:
                        console.print(event.delta, end="", markup=False, highlight=False)
                    elif event.type == "failed" and event.error:
                        console.print()
                        return f"{event.error.code}: {event.error.message}"
            console.print()
            console.print(f"[dim]chat {created.chat_id} · {created.model}[/]")
        return None

    failure = run_with_core(settings_of(ctx), action)
    if failure:
        errors.print(f"[red]{failure}[/]")
        raise typer.Exit(1)
