"""`patchbay pairing …` and `patchbay identities …`: let senders in, link one person's addresses."""

from __future__ import annotations

import typer

from patchbay.cli.context import console, print_table, run_with_core, settings_of
from patchbay.client import CoreClient
from patchbay.schemas.senders import IdentityCreate, IdentityRead, PairingApprove, PairingRead

pairing_app = typer.Typer(help="Senders waiting to be let in (admin).", no_args_is_help=True)
identities_app = typer.Typer(help="Channel addresses of users (admin).", no_args_is_help=True)


@pairing_app.command("list")
def list_pairings(ctx: typer.Context) -> None:
    """Unknown senders with their pairing codes, until the codes expire."""

    async def action(client: CoreClient) -> list[PairingRead]:
        return await client.call_as(list[PairingRead], "GET", "/v1/pairings")

    found = run_with_core(settings_of(ctx), action)
    print_table(
        "pairing requests",
        ["channel", "code", "address", "name", "expires"],
        [[p.channel, p.code, p.address, p.display_name, p.expires_at] for p in found],
    )


@pairing_app.command("approve")
def approve(
    ctx: typer.Context,
    channel: str,
    code: str,
    user: str | None = typer.Option(None, help="link to this existing user; default: a new one"),
) -> None:
    """Let the sender with this code in."""

    async def action(client: CoreClient) -> IdentityRead:
        return await client.call_as(
            IdentityRead,
            "POST",
            f"/v1/pairings/{channel}/{code}/approve",
            body=PairingApprove(user=user),
        )

    identity = run_with_core(settings_of(ctx), action)
    console.print(f"{identity.channel} {identity.address} is now user {identity.user_id}")


@identities_app.command("list")
def list_identities(ctx: typer.Context) -> None:
    """Every channel address and the user it belongs to."""

    async def action(client: CoreClient) -> list[IdentityRead]:
        return await client.call_as(list[IdentityRead], "GET", "/v1/identities")

    found = run_with_core(settings_of(ctx), action)
    print_table(
        "identities",
        ["id", "user", "channel", "address"],
        [[i.id, i.user_id, i.channel, i.address] for i in found],
    )


@identities_app.command("link")
def link(ctx: typer.Context, user: str, channel: str, address: str) -> None:
    """Give USER (name, id or number) the ADDRESS on CHANNEL too."""
    data = IdentityCreate(user=user, channel=channel, address=address)

    async def action(client: CoreClient) -> IdentityRead:
        return await client.call_as(IdentityRead, "POST", "/v1/identities", body=data)

    identity = run_with_core(settings_of(ctx), action)
    console.print(f"linked {channel} {address} to user {identity.user_id}")


@identities_app.command("unlink")
def unlink(ctx: typer.Context, identity_id: str) -> None:
    """Remove a channel address from its user."""

    async def action(client: CoreClient) -> None:
        await client.call("DELETE", f"/v1/identities/{identity_id}")

    run_with_core(settings_of(ctx), action)
    console.print(f"unlinked {identity_id}")
