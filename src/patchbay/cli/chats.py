"""`patchbay chats …`: list, show, create, rename, share, delete chats; answer again; switch branch."""

from __future__ import annotations

import typer
from rich.markup import escape

from patchbay.cli.context import console, print_table, run_with_core, settings_of
from patchbay.client import CoreClient
from patchbay.schemas.chats import ChatCreate, ChatRead, ChatUpdate, MessageRead
from patchbay.schemas.turns import Regenerate, TurnResult

chats_app = typer.Typer(help="Chats and their messages.", no_args_is_help=True)


@chats_app.command("list")
def list_chats(
    ctx: typer.Context,
    all_users: bool = typer.Option(False, "--all", help="every user's chats (admin)"),
    limit: int = typer.Option(50, min=1, max=500),
) -> None:
    """The chats you own or are a member of, newest first."""

    async def action(client: CoreClient) -> list[ChatRead]:
        query = f"?limit={limit}" + ("&all_users=true" if all_users else "")
        return await client.call_as(list[ChatRead], "GET", f"/v1/chats{query}")

    chats = run_with_core(settings_of(ctx), action)
    print_table(
        "chats",
        ["#", "id", "title", "channel", "members", "updated"],
        [[c.number, c.id, c.title, c.channel, len(c.members), c.updated_at] for c in chats],
    )


@chats_app.command("show")
def show_chat(ctx: typer.Context, chat: str = typer.Argument(help="id or number")) -> None:
    """The chat's current branch; `[2/3]` marks an answer with alternatives."""

    async def action(client: CoreClient) -> tuple[ChatRead, list[MessageRead]]:
        found = await client.call_as(ChatRead, "GET", f"/v1/chats/{chat}")
        messages = await client.call_as(list[MessageRead], "GET", f"/v1/chats/{chat}/messages")
        return found, messages

    found, messages = run_with_core(settings_of(ctx), action)
    console.print(f"[bold]{escape(found.title or '(untitled)')}[/]  #{found.number} {found.id}")
    for message in messages:
        where = ""
        if len(message.sibling_ids) > 1:
            where = f" [{message.sibling_ids.index(message.id) + 1}/{len(message.sibling_ids)}]"
        console.print(f"[dim]#{message.number} {message.role}{escape(where)}[/]")
        console.print(escape(message.content))


@chats_app.command("create")
def create_chat(
    ctx: typer.Context,
    title: str,
    member: list[str] = typer.Option([], "--member", "-m", help="a user name; repeat for more"),
    model: str | None = typer.Option(None, help="the chat's model"),
) -> None:
    """A new chat you own, shared with the members."""
    data = ChatCreate(title=title, members=member, model=model)

    async def action(client: CoreClient) -> ChatRead:
        return await client.call_as(ChatRead, "POST", "/v1/chats", body=data)

    created = run_with_core(settings_of(ctx), action)
    console.print(f"created chat #{created.number} ({created.id})")


def _update(ctx: typer.Context, chat: str, data: ChatUpdate) -> ChatRead:
    async def action(client: CoreClient) -> ChatRead:
        return await client.call_as(ChatRead, "PATCH", f"/v1/chats/{chat}", body=data)

    return run_with_core(settings_of(ctx), action)


@chats_app.command("rename")
def rename_chat(ctx: typer.Context, chat: str, title: str) -> None:
    """Give a chat a new title."""
    _update(ctx, chat, ChatUpdate(title=title))
    console.print(f"renamed chat {chat}")


@chats_app.command("members")
def set_members(ctx: typer.Context, chat: str, names: list[str]) -> None:
    """Replace a chat's members (user names)."""
    updated = _update(ctx, chat, ChatUpdate(members=names))
    console.print(f"chat {chat} has {len(updated.members)} members")


@chats_app.command("switch")
def switch_branch(ctx: typer.Context, chat: str, message: str) -> None:
    """Show the branch through MESSAGE (an answer's id or number) from now on."""
    _update(ctx, chat, ChatUpdate(current_message_id=message))
    console.print(f"chat {chat} now shows the branch through message {message}")


@chats_app.command("delete")
def delete_chat(ctx: typer.Context, chat: str) -> None:
    """Delete a chat and its messages."""

    async def action(client: CoreClient) -> None:
        await client.call("DELETE", f"/v1/chats/{chat}")

    run_with_core(settings_of(ctx), action)
    console.print(f"deleted chat {chat}")


@chats_app.command("regenerate")
def regenerate(
    ctx: typer.Context,
    message: str = typer.Argument(help="an answer (or its question): id or number"),
    model: str | None = typer.Option(None, help="default: the earlier answer's model"),
) -> None:
    """Answer again; the earlier answer stays as a sibling branch."""

    async def action(client: CoreClient) -> TurnResult:
        return await client.call_as(
            TurnResult,
            "POST",
            f"/v1/messages/{message}/regenerate?wait=true",
            body=Regenerate(model=model, stream=False),
        )

    result = run_with_core(settings_of(ctx), action)
    if result.outcome.type != "done":
        error = result.outcome.error
        console.print(
            f"[red]{error.code if error else 'failed'}:[/] {error.message if error else ''}"
        )
        raise typer.Exit(1)
    console.print(escape(result.outcome.content or ""))
