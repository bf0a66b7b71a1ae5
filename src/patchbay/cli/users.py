"""`patchbay users …` and `patchbay keys …`: people and their API keys, through the core."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from patchbay.cli.context import console, run_with_core, settings_of
from patchbay.client import CoreClient
from patchbay.schemas.users import ApiKeyIssued, ApiKeyRead, Role, UserCreate, UserRead

users_app = typer.Typer(help="Manage users (admin).", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row))
    console.print(table)


@users_app.command("list")
def list_users(ctx: typer.Context) -> None:
    """List every user."""

    async def action(client: CoreClient) -> list[UserRead]:
        return await client.call_as(list[UserRead], "GET", "/v1/users")

    users = run_with_core(settings_of(ctx), action)
    _table(
        "users",
        ["id", "name", "role", "created"],
        [[u.id, u.name, u.role, u.created_at] for u in users],
    )


@users_app.command("create")
def create_user(
    ctx: typer.Context,
    name: str,
    role: str = typer.Option("user", help="user or admin"),
    with_key: bool = typer.Option(True, help="also issue an API key and print it once"),
) -> None:
    """Create a user (and a first API key)."""
    data = UserCreate(name=name, role=_role(role))

    async def action(client: CoreClient) -> tuple[UserRead, ApiKeyIssued | None]:
        user = await client.call_as(UserRead, "POST", "/v1/users", body=data)
        key = None
        if with_key:
            key = await client.call_as(
                ApiKeyIssued, "POST", f"/v1/users/{user.id}/keys", body={"name": "default"}
            )
        return user, key

    user, key = run_with_core(settings_of(ctx), action)
    console.print(f"created user [bold]{user.name}[/] ({user.id}, {user.role})")
    if key:
        console.print(f"API key (shown once): [bold]{key.key}[/]")


def _role(value: str) -> Role:
    if value not in ("user", "admin"):
        raise typer.BadParameter("role is user or admin")
    return "admin" if value == "admin" else "user"


@users_app.command("delete")
def delete_user(ctx: typer.Context, user_id: str) -> None:
    """Delete a user with their keys and chats."""

    async def action(client: CoreClient) -> None:
        await client.call("DELETE", f"/v1/users/{user_id}")

    run_with_core(settings_of(ctx), action)
    console.print(f"deleted user {user_id}")


@keys_app.command("list")
def list_keys(
    ctx: typer.Context, all_users: bool = typer.Option(False, help="everyone's (admin)")
) -> None:
    """List API keys (never the keys themselves)."""

    async def action(client: CoreClient) -> list[ApiKeyRead]:
        query = "?all_users=true" if all_users else ""
        return await client.call_as(list[ApiKeyRead], "GET", f"/v1/keys{query}")

    keys = run_with_core(settings_of(ctx), action)
    _table(
        "API keys",
        ["id", "user", "name", "prefix", "created", "revoked"],
        [[k.id, k.user_id, k.name, k.prefix + "…", k.created_at, k.revoked_at] for k in keys],
    )


@keys_app.command("create")
def create_key(ctx: typer.Context, user_id: str, name: str = "default") -> None:
    """Issue a new API key for a user (admin); printed once."""

    async def action(client: CoreClient) -> ApiKeyIssued:
        return await client.call_as(
            ApiKeyIssued, "POST", f"/v1/users/{user_id}/keys", body={"name": name}
        )

    issued = run_with_core(settings_of(ctx), action)
    console.print(f"API key (shown once): [bold]{issued.key}[/]")


@keys_app.command("revoke")
def revoke_key(ctx: typer.Context, key_id: str) -> None:
    """Revoke an API key."""

    async def action(client: CoreClient) -> None:
        await client.call("DELETE", f"/v1/keys/{key_id}")

    run_with_core(settings_of(ctx), action)
    console.print(f"revoked key {key_id}")
