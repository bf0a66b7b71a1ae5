"""`patchbay models …` and `patchbay providers …`: what clients can ask for, and where it runs."""

from __future__ import annotations

from pathlib import Path

import typer

from patchbay.cli.context import console, print_table, run_with_core, settings_of
from patchbay.client import CoreClient
from patchbay.schemas.catalog import (
    ATTACHMENT_TYPES,
    ModelCreate,
    ModelRead,
    ProviderCreate,
    ProviderRead,
)

models_app = typer.Typer(help="Manage models.", no_args_is_help=True)
providers_app = typer.Typer(help="Manage providers (admin).", no_args_is_help=True)


@models_app.command("list")
def list_models(ctx: typer.Context) -> None:
    """List the models clients can use."""

    async def action(client: CoreClient) -> list[ModelRead]:
        return await client.list_models()

    models = run_with_core(settings_of(ctx), action)
    print_table(
        "models",
        ["name", "provider", "kind", "upstream model", "default"],
        [
            [m.name, m.provider, m.provider_kind, m.upstream_model, "yes" if m.is_default else ""]
            for m in models
        ],
    )


def _add_model(ctx: typer.Context, data: ModelCreate) -> None:
    async def action(client: CoreClient) -> ModelRead:
        return await client.call_as(ModelRead, "POST", "/v1/models", body=data)

    model = run_with_core(settings_of(ctx), action)
    console.print(f"added model [bold]{model.name}[/] on {model.provider}")


@models_app.command("add")
def add_model(
    ctx: typer.Context,
    name: str,
    provider: str = typer.Option(..., help="the provider's name"),
    upstream_model: str | None = typer.Option(None, help="the provider's id (default: NAME)"),
    default: bool = typer.Option(False, help="make it the default model"),
    attachment_type: list[str] = typer.Option(
        [],
        "--attachment-type",
        help="a media type it reads itself, sent as is (image/png, audio/wav…); repeat",
    ),
) -> None:
    """Add a model on a provider."""
    _add_model(
        ctx,
        ModelCreate(
            name=name,
            provider=provider,
            upstream_model=upstream_model,
            options={ATTACHMENT_TYPES: attachment_type} if attachment_type else {},
            is_default=default,
        ),
    )


@models_app.command("add-gguf")
def add_gguf(
    ctx: typer.Context,
    path: Path = typer.Argument(..., exists=True, dir_okay=False, resolve_path=True),
    name: str | None = typer.Option(None, help="the model's name (default: the file's stem)"),
    default: bool = typer.Option(False, help="make it the default model"),
) -> None:
    """Serve any GGUF file with the embedded llama.cpp engine."""
    _add_model(
        ctx,
        ModelCreate(
            name=name or path.stem,
            provider="local",
            upstream_model=str(path),
            is_default=default,
        ),
    )


@models_app.command("default")
def set_default(ctx: typer.Context, name: str) -> None:
    """Make a model the default (used when a request names `default`)."""

    async def action(client: CoreClient) -> None:
        await client.call("PATCH", f"/v1/models/{name}", body={"is_default": True})

    run_with_core(settings_of(ctx), action)
    console.print(f"{name} is now the default model")


@models_app.command("remove")
def remove_model(ctx: typer.Context, name: str) -> None:
    """Remove a model."""

    async def action(client: CoreClient) -> None:
        await client.call("DELETE", f"/v1/models/{name}")

    run_with_core(settings_of(ctx), action)
    console.print(f"removed model {name}")


@providers_app.command("list")
def list_providers(ctx: typer.Context) -> None:
    """List providers (keys are never shown)."""

    async def action(client: CoreClient) -> list[ProviderRead]:
        return await client.call_as(list[ProviderRead], "GET", "/v1/providers")

    providers = run_with_core(settings_of(ctx), action)
    print_table(
        "providers",
        ["name", "kind", "api base", "key"],
        [
            [p.name, p.kind, p.api_base, "stored" if p.has_api_key else p.api_key_env or ""]
            for p in providers
        ],
    )


@providers_app.command("add")
def add_provider(
    ctx: typer.Context,
    name: str,
    kind: str = typer.Option(..., help="openai (any OpenAI-compatible server) or llm (a plugin)"),
    api_base: str | None = typer.Option(None, help="the server's base URL, ending in /v1"),
    api_key_env: str | None = typer.Option(None, help="read the key from this variable"),
    api_key: str | None = typer.Option(
        None, envvar="PATCHBAY_PROVIDER_API_KEY", help="stored encrypted; prefer the variable"
    ),
) -> None:
    """Add a provider."""
    data = ProviderCreate.model_validate(
        {
            "name": name,
            "kind": kind,
            "api_base": api_base,
            "api_key": api_key,
            "api_key_env": api_key_env,
        }
    )

    async def action(client: CoreClient) -> ProviderRead:
        body = data.model_dump(mode="json", exclude_none=True)
        if data.api_key is not None:
            body["api_key"] = data.api_key.get_secret_value()
        return await client.call_as(ProviderRead, "POST", "/v1/providers", body=body)

    provider = run_with_core(settings_of(ctx), action)
    console.print(f"added provider [bold]{provider.name}[/] ({provider.kind})")


@providers_app.command("remove")
def remove_provider(ctx: typer.Context, name: str) -> None:
    """Remove a provider and its models."""

    async def action(client: CoreClient) -> None:
        await client.call("DELETE", f"/v1/providers/{name}")

    run_with_core(settings_of(ctx), action)
    console.print(f"removed provider {name}")
