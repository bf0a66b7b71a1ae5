"""Providers and models: everyone lists models; admins change the catalog."""

from __future__ import annotations

from fastapi import APIRouter

from patchbay.api.deps import AdminUser, CurrentUser, HubDep
from patchbay.schemas.catalog import (
    ModelCreate,
    ModelRead,
    ModelUpdate,
    ProviderCreate,
    ProviderRead,
    ProviderUpdate,
)

router = APIRouter(prefix="/v1", tags=["catalog"])


@router.get("/providers", response_model=list[ProviderRead])
async def list_providers(hub: HubDep, _admin: AdminUser) -> list[ProviderRead]:
    return await hub.catalog.list_providers()


@router.post("/providers", response_model=ProviderRead, status_code=201)
async def add_provider(data: ProviderCreate, hub: HubDep, _admin: AdminUser) -> ProviderRead:
    return await hub.catalog.add_provider(data)


@router.patch("/providers/{name}", response_model=ProviderRead)
async def update_provider(
    name: str, data: ProviderUpdate, hub: HubDep, _admin: AdminUser
) -> ProviderRead:
    return await hub.catalog.update_provider(name, data)


@router.delete("/providers/{name}", status_code=204)
async def delete_provider(name: str, hub: HubDep, _admin: AdminUser) -> None:
    await hub.catalog.delete_provider(name)


@router.get("/models", response_model=list[ModelRead])
async def list_models(hub: HubDep, _user: CurrentUser) -> list[ModelRead]:
    return await hub.catalog.list_models()


@router.post("/models", response_model=ModelRead, status_code=201)
async def add_model(data: ModelCreate, hub: HubDep, _admin: AdminUser) -> ModelRead:
    return await hub.catalog.add_model(data)


@router.patch("/models/{name:path}", response_model=ModelRead)
async def update_model(name: str, data: ModelUpdate, hub: HubDep, _admin: AdminUser) -> ModelRead:
    return await hub.catalog.update_model(name, data)


@router.delete("/models/{name:path}", status_code=204)
async def delete_model(name: str, hub: HubDep, _admin: AdminUser) -> None:
    await hub.catalog.delete_model(name)
