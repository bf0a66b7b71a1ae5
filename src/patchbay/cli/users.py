"""`patchbay users …` and `patchbay keys …`: people and their API keys, through the core."""

from __future__ import annotations

import typer

from patchbay.cli.context import console, print_table, run_with_core, settings_of
from patchbay.client import CoreClient
from patchbay.schemas.users import (
    ApiKeyIssued,
    ApiKeyRead,
    InstructionRecord,
    Role,
    UserCreate,
    UserRead,
    UserUpdate,
)

users_app = typer.Typer(help="Manage users and their instruction records.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


@users_app.command("list")
def list_users(ctx: typer.Context) -> None:
    """List every user (yourself only, unless you are an admin)."""

    async def action(client: CoreClient) -> list[UserRead]:
        return await client.call_as(list[UserRead], "GET", "/v1/users")

    users = run_with_core(settings_of(ctx), action)
    print_table(
        "users",
        ["#", "id", "name", "role", "recording", "created"],
        [
            [u.number, u.id, u.name, u.role, "on" if u.instruction_recording else "", u.created_at]
            for u in users
        ],
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


@users_app.command("update")
def update_user(
    ctx: typer.Context,
    user: str = typer.Argument(help="id or number"),
    name: str | None = typer.Option(None, help="a new name"),
    role: str | None = typer.Option(None, help="user or admin (admins only)"),
    profile: str | None = typer.Option(None, help="a new profile (text)"),
) -> None:
    """Change a user's name, role or profile."""
    values: dict[str, object] = {"name": name, "profile": profile}
    if role is not None:
        values["role"] = _role(role)
    data = UserUpdate.model_validate({k: v for k, v in values.items() if v is not None})

    async def action(client: CoreClient) -> UserRead:
        return await client.call_as(UserRead, "PATCH", f"/v1/users/{user}", body=data)

    updated = run_with_core(settings_of(ctx), action)
    console.print(f"updated user [bold]{updated.name}[/] ({updated.id})")


@users_app.command("recording")
def recording(
    ctx: typer.Context,
    user: str = typer.Argument(help="id or number"),
    state: str = typer.Argument(help="on or off"),
) -> None:
    """Turn recording of a user's instructions on or off."""
    if state not in ("on", "off"):
        raise typer.BadParameter("state is on or off")
    data = UserUpdate(instruction_recording=state == "on")

    async def action(client: CoreClient) -> UserRead:
        return await client.call_as(UserRead, "PATCH", f"/v1/users/{user}", body=data)

    run_with_core(settings_of(ctx), action)
    console.print(f"instruction recording is {state} for user {user}")


@users_app.command("records")
def records(
    ctx: typer.Context,
    user: str = typer.Argument(help="id or number"),
    limit: int = typer.Option(50, min=1, max=1000),
    delete: bool = typer.Option(False, "--delete", help="delete them all instead"),
) -> None:
    """A user's recorded instructions, newest first (or delete them)."""
    path = f"/v1/users/{user}/instruction-records"

    async def action(client: CoreClient) -> list[InstructionRecord] | int:
        if delete:
            return int((await client.call("DELETE", path))["deleted"])
        return await client.call_as(list[InstructionRecord], "GET", f"{path}?limit={limit}")

    found = run_with_core(settings_of(ctx), action)
    if isinstance(found, int):
        console.print(f"deleted {found} instruction records")
        return
    print_table(
        "instruction records",
        ["when", "type", "via", "status", "error", "ms"],
        [[r.created_at, r.type, r.transport, r.status, r.error_code, r.latency_ms] for r in found],
    )


@keys_app.command("list")
def list_keys(
    ctx: typer.Context, all_users: bool = typer.Option(False, help="everyone's (admin)")
) -> None:
    """List API keys (never the keys themselves)."""

    async def action(client: CoreClient) -> list[ApiKeyRead]:
        query = "?all_users=true" if all_users else ""
        return await client.call_as(list[ApiKeyRead], "GET", f"/v1/keys{query}")

    keys = run_with_core(settings_of(ctx), action)
    print_table(
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
