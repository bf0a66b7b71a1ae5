"""Providers and models: the catalog clients pick from, with provider keys encrypted at rest."""

from __future__ import annotations

from functools import partial
from typing import Any

from patchbay.cache import TtlCache
from patchbay.core.keys import SecretBox
from patchbay.core.llm.registry import ModelTarget
from patchbay.errors import InvalidRequest, ModelNotFound
from patchbay.schemas.assistants import AssistantTemplate
from patchbay.schemas.catalog import (
    ATTACHMENT_TYPES,
    ModelCreate,
    ModelRead,
    ModelUpdate,
    ProviderCreate,
    ProviderRead,
    ProviderUpdate,
)
from patchbay.store import catalog as rows
from patchbay.store.db import Database

DEFAULT_ALIASES = frozenset({"default", ""})
LOCAL_PROVIDER = "local"


def _provider_read(record: rows.ProviderRecord) -> ProviderRead:
    return ProviderRead(
        id=record.id,
        name=record.name,
        kind=record.kind,
        api_base=record.api_base,
        has_api_key=record.api_key_encrypted is not None,
        api_key_env=record.api_key_env,
        options=record.options,
        created_at=record.created_at,
    )


def _model_read(model: rows.ModelRecord, provider: rows.ProviderRecord) -> ModelRead:
    return ModelRead(
        id=model.id,
        name=model.name,
        provider=provider.name,
        provider_kind=provider.kind,
        upstream_model=model.upstream_model,
        options=model.options,
        is_default=model.is_default,
        created_at=model.created_at,
    )


class Catalog:
    """Manages providers and models and resolves a requested model name to a `ModelTarget`."""

    def __init__(self, db: Database, box: SecretBox, env: dict[str, str], *, ttl_s: float = 5.0):
        self._db = db
        self._box = box
        self._env = env
        self._targets: TtlCache[str, ModelTarget] = TtlCache(ttl_s)

    def _changed(self) -> None:
        self._targets.clear()

    async def ensure_local(self, model_name: str) -> None:
        """Register the embedded model (and make it the default if none is) on first start."""
        async with self._db.begin() as conn:
            existing = {p.name for p in await rows.list_providers(conn)}
            if LOCAL_PROVIDER in existing:
                return
            provider = await rows.insert_provider(
                conn,
                name=LOCAL_PROVIDER,
                kind="local",
                api_base=None,
                api_key_encrypted=None,
                api_key_env=None,
                options={},
            )
            has_default = any(m.is_default for m, _ in await rows.list_models(conn))
            await rows.insert_model(
                conn,
                name=model_name,
                provider_id=provider.id,
                upstream_model=model_name,
                options={},
                is_default=not has_default,
            )
        self._changed()

    async def add_provider(self, data: ProviderCreate) -> ProviderRead:
        if data.kind == "openai" and not data.api_base:
            raise InvalidRequest("an `openai` provider needs `api_base` (the URL ending in /v1)")
        key = data.api_key.get_secret_value() if data.api_key else None
        async with self._db.begin() as conn:
            record = await rows.insert_provider(
                conn,
                name=data.name,
                kind=data.kind,
                api_base=data.api_base,
                api_key_encrypted=self._box.encrypt(key) if key else None,
                api_key_env=data.api_key_env,
                options=data.options,
            )
        self._changed()
        return _provider_read(record)

    async def list_providers(self) -> list[ProviderRead]:
        async with self._db.connect() as conn:
            return [_provider_read(r) for r in await rows.list_providers(conn)]

    async def update_provider(self, name: str, data: ProviderUpdate) -> ProviderRead:
        values: dict[str, Any] = data.model_dump(exclude_unset=True, exclude={"api_key"})
        if data.api_key is not None:
            values["api_key_encrypted"] = self._box.encrypt(data.api_key.get_secret_value())
        async with self._db.begin() as conn:
            await rows.get_provider(conn, name)
            record = await rows.update_provider(conn, name, **values)
        self._changed()
        return _provider_read(record)

    async def delete_provider(self, name: str) -> None:
        async with self._db.begin() as conn:
            await rows.delete_provider(conn, name)
        self._changed()

    async def add_model(self, data: ModelCreate) -> ModelRead:
        async with self._db.begin() as conn:
            provider = await rows.get_provider(conn, data.provider)
            model = await rows.insert_model(
                conn,
                name=data.name,
                provider_id=provider.id,
                upstream_model=data.upstream_model or data.name,
                options=data.options,
                is_default=data.is_default,
            )
        self._changed()
        return _model_read(model, provider)

    async def list_models(self) -> list[ModelRead]:
        async with self._db.connect() as conn:
            return [_model_read(m, p) for m, p in await rows.list_models(conn)]

    async def update_model(self, name: str, data: ModelUpdate) -> ModelRead:
        async with self._db.begin() as conn:
            await rows.update_model(conn, name, **data.model_dump(exclude_unset=True))
        self._changed()
        return next(m for m in await self.list_models() if m.name == name)

    async def delete_model(self, name: str) -> None:
        async with self._db.begin() as conn:
            await rows.delete_model(conn, name)
        self._changed()

    async def model_name(self, provider: str | None, llm_name: str) -> str:
        """The catalog name of a model named by seed 003's `provider_name` + `llm_name`: a model
        of that provider whose name or upstream name is `llm_name` (any provider when None)."""
        candidates = [
            m for m in await self.list_models() if provider is None or m.provider == provider
        ]
        for found in (
            [m for m in candidates if m.name == llm_name],
            [m for m in candidates if m.upstream_model == llm_name],
        ):
            if found:
                return found[0].name
        where = f" of provider {provider!r}" if provider else ""
        raise ModelNotFound(f"no LLM {llm_name!r}{where}; LLM_LIST lists them")

    async def resolve_in(self, provider: str | None, model: str | None) -> ModelTarget:
        """A template stream's model: `model` as a model id when no provider is named; else the
        provider's catalog model of that name (or upstream name), or that upstream model as is."""
        if provider is None:
            return await self.resolve(model)
        async with self._db.connect() as conn:
            entries = await rows.list_models(conn)
            record = await rows.get_provider(conn, provider)
        mine = [(m, p) for m, p in entries if p.name == provider]
        for found in (
            [e for e in mine if model is not None and model in (e[0].name, e[0].upstream_model)],
            [e for e in mine if model is None and e[0].is_default],
            mine if model is None and len(mine) == 1 else [],
        ):
            if found:
                return self._target(*found[0])
        if model is None:
            raise ModelNotFound(f"provider {provider!r} has several models: name one in settings")
        upstream = rows.ModelRecord(
            id="",
            name=f"{provider}/{model}",
            provider_id=record.id,
            upstream_model=model,
            options={},
            is_default=False,
            created_at=record.created_at,
        )
        return self._target(upstream, record)

    async def targets(
        self, model: str | None, template: AssistantTemplate | dict[str, Any] | None
    ) -> list[ModelTarget]:
        """The models a turn runs: `model` (or the default one); with an assistant `template`,
        each of its streams' in turn (the last one answers)."""
        if template is None:
            return [await self.resolve(model)]
        if isinstance(template, dict):
            template = AssistantTemplate.model_validate(template)
        return [await self.resolve_in(s.provider, s.settings.model) for s in template.streams]

    async def resolve(self, name: str | None) -> ModelTarget:
        """The model a request names (or the default one), ready for the registry."""
        key = (name or "").strip()
        return await self._targets.get(key, partial(self._lookup, key))

    async def _lookup(self, name: str) -> ModelTarget:
        async with self._db.connect() as conn:
            entries = await rows.list_models(conn)
        for model, provider in entries:
            if model.name == name or (name in DEFAULT_ALIASES and model.is_default):
                return self._target(model, provider)
        if name in DEFAULT_ALIASES:
            raise ModelNotFound("no default model is set; `patchbay models default NAME` sets one")
        raise ModelNotFound(f"the model {name!r} does not exist; GET /v1/models lists them")

    def _target(self, model: rows.ModelRecord, provider: rows.ProviderRecord) -> ModelTarget:
        api_key = None
        if provider.api_key_encrypted:
            api_key = self._box.decrypt(provider.api_key_encrypted)
        elif provider.api_key_env:
            api_key = self._env.get(provider.api_key_env)
        options = {**provider.options, **model.options}
        media_types = options.pop(ATTACHMENT_TYPES, None)  # checked at the edge: a list
        return ModelTarget(
            name=model.name,
            kind=provider.kind,
            upstream_model=model.upstream_model,
            api_base=provider.api_base,
            api_key=api_key,
            options=options,
            attachment_types=frozenset(media_types if isinstance(media_types, list) else ()),
        )
