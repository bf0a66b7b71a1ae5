"""Senders, identities and pairing: channel modules resolve who writes; admins approve and link."""

from __future__ import annotations

from fastapi import APIRouter

from patchbay.api.deps import CurrentUser, HubDep, ModuleCaller
from patchbay.schemas.senders import (
    IdentityCreate,
    IdentityRead,
    PairingApprove,
    PairingRead,
    SenderResolve,
    SenderResolved,
)

router = APIRouter(prefix="/v1", tags=["senders"])


@router.post("/senders/resolve", response_model=SenderResolved)
async def resolve_sender(data: SenderResolve, hub: HubDep, _module: ModuleCaller) -> SenderResolved:
    """A channel module asks who a sender is, under its policy (module token only)."""
    return await hub.senders.resolve(data)


@router.get("/pairings", response_model=list[PairingRead])
async def list_pairings(hub: HubDep, user: CurrentUser) -> list[PairingRead]:
    """Admins: senders waiting to be let in, with their codes."""
    return await hub.senders.pairings(user)


@router.post("/pairings/{channel}/{code}/approve", response_model=IdentityRead, status_code=201)
async def approve_pairing(
    channel: str, code: str, hub: HubDep, user: CurrentUser, data: PairingApprove | None = None
) -> IdentityRead:
    """Admins: let a sender in, as a new user or linked to an existing one."""
    return await hub.senders.approve(user, channel, code, data or PairingApprove())


@router.get("/identities", response_model=list[IdentityRead])
async def list_identities(hub: HubDep, user: CurrentUser) -> list[IdentityRead]:
    return await hub.senders.identities(user)


@router.post("/identities", response_model=IdentityRead, status_code=201)
async def link_identity(data: IdentityCreate, hub: HubDep, user: CurrentUser) -> IdentityRead:
    """Admins: give a user one more address, so one person is one user across channels."""
    return await hub.senders.link(user, data)


@router.delete("/identities/{identity_id}", status_code=204)
async def unlink_identity(identity_id: str, hub: HubDep, user: CurrentUser) -> None:
    await hub.senders.unlink(user, identity_id)
