"""`patchbay helpers …`: the helpers registered with the core, their health, and admin controls."""

from __future__ import annotations

import typer

from patchbay.cli.context import console, print_table, run_with_core, settings_of
from patchbay.client import CoreClient
from patchbay.schemas.helpers import HelperRead, HelperUpdate, McpServerAdd

helpers_app = typer.Typer(
    help="Registered helpers: list them, switch them off, add MCP servers.", no_args_is_help=True
)


@helpers_app.command("list")
def list_helpers(ctx: typer.Context) -> None:
    """Every helper with its capabilities, state, latency and errors."""

    async def action(client: CoreClient) -> list[HelperRead]:
        return await client.call_as(list[HelperRead], "GET", "/v1/helpers")

    found = run_with_core(settings_of(ctx), action)
    print_table(
        "helpers",
        ["name", "state", "enabled", "capabilities", "calls", "errors", "mean ms", "url"],
        [
            [
                h.name,
                h.state,
                "yes" if h.enabled else "no",
                ", ".join(f"{c.name} ({c.kind})" for c in h.capabilities),
                h.stats.calls,
                h.stats.errors,
                h.stats.mean_latency_ms,
                h.base_url,
            ]
            for h in found
        ],
    )


def _update(ctx: typer.Context, name: str, data: HelperUpdate) -> HelperRead:
    # The fields set, nulls included: a null lifts a limit (a model body would drop the nulls).
    body = data.model_dump(mode="json", exclude_unset=True)

    async def action(client: CoreClient) -> HelperRead:
        return await client.call_as(HelperRead, "PATCH", f"/v1/helpers/{name}", body=body)

    return run_with_core(settings_of(ctx), action)


@helpers_app.command("disable")
def disable(ctx: typer.Context, name: str) -> None:
    """Stop offering and calling a helper (admin)."""
    _update(ctx, name, HelperUpdate(enabled=False))
    console.print(f"helper {name} disabled")


@helpers_app.command("enable")
def enable(ctx: typer.Context, name: str) -> None:
    """Use a disabled helper again (admin)."""
    _update(ctx, name, HelperUpdate(enabled=True))
    console.print(f"helper {name} enabled")


@helpers_app.command("allow")
def allow(
    ctx: typer.Context,
    name: str,
    role: list[str] = typer.Option([], "--role", help="a role that may use it; repeat"),
    user: list[str] = typer.Option([], "--user", help="a user (name or id) who may; repeat"),
    everyone: bool = typer.Option(False, "--everyone", help="lift the limits"),
) -> None:
    """Limit who may use a helper to these roles and users (admin), or lift its limits."""
    if not (role or user or everyone):
        raise typer.BadParameter("name a --role or a --user who may use it, or --everyone")
    data = (
        HelperUpdate(allowed_roles=None, allowed_users=None)
        if everyone
        else HelperUpdate(allowed_roles=role or None, allowed_users=user or None)
    )
    _update(ctx, name, data)
    console.print(f"helper {name}: {'everyone' if everyone else 'limited'}")


@helpers_app.command("remove")
def remove(ctx: typer.Context, name: str) -> None:
    """Forget a helper (admin); one that is still running registers again."""

    async def action(client: CoreClient) -> None:
        await client.call("DELETE", f"/v1/helpers/{name}")

    run_with_core(settings_of(ctx), action)
    console.print(f"helper {name} removed")


@helpers_app.command("add-mcp")
def add_mcp(ctx: typer.Context, name: str, url: str) -> None:
    """Register the MCP server at URL (streamable HTTP) as helper NAME (admin)."""

    async def action(client: CoreClient) -> HelperRead:
        return await client.call_as(
            HelperRead, "POST", "/v1/helpers/mcp", body=McpServerAdd(name=name, url=url)
        )

    added = run_with_core(settings_of(ctx), action)
    names = ", ".join(c.name for c in added.capabilities)
    console.print(f"helper {added.name} registered with tools: {names}")
