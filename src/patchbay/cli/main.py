"""The root `patchbay` command: builds Settings once and hands them to every subcommand."""

from __future__ import annotations

import os

import typer
from pydantic import ValidationError

from patchbay.cli import (
    assistants,
    catalog,
    chat,
    chats,
    control,
    helper_registry,
    helpers,
    senders,
    serve,
    users,
    worker,
)
from patchbay.cli.context import State, errors
from patchbay.config import Settings
from patchbay.supervisor.lifeline import end_with_supervisord

app = typer.Typer(
    name="patchbay",
    help="A self-hosted LLM service hub: one core, many channels.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(ctx: typer.Context) -> None:
    # What patchbay writes (its database, every prompt and answer in the llm log, its keys) is
    # for the user who runs it alone, whatever umask the shell had.
    os.umask(0o077)
    try:
        settings = Settings()
    except ValidationError as exc:
        errors.print(f"[red]Invalid configuration:[/] {exc}")
        raise typer.Exit(2) from exc
    end_with_supervisord(settings.run_dir)
    ctx.obj = State(settings=settings)


serve.register(app)
control.register(app)
app.add_typer(users.users_app, name="users")
app.add_typer(users.keys_app, name="keys")
app.add_typer(catalog.models_app, name="models")
app.add_typer(catalog.providers_app, name="providers")
app.add_typer(chats.chats_app, name="chats")
app.add_typer(assistants.assistants_app, name="assistants")
app.add_typer(senders.pairing_app, name="pairing")
app.add_typer(helpers.helper_app, name="helper")
app.add_typer(helper_registry.helpers_app, name="helpers")
app.add_typer(senders.identities_app, name="identities")
app.command("chat")(chat.chat)
app.command("worker")(worker.worker)

if __name__ == "__main__":
    app()
