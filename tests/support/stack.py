"""A running patchbay for integration tests: the core and the OpenAI channel on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from typer.testing import CliRunner

from patchbay.api.app import create_app as create_core
from patchbay.channels.openai_compat.app import create_app as create_openai
from patchbay.cli.main import app as cli
from patchbay.config import Settings
from tests.support.servers import serve_in_thread


@dataclass
class Stack:
    settings: Settings
    core_url: str
    openai_url: str
    admin_key: str

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.core_url,
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=30,
        )

    def chats(self) -> list[dict[str, Any]]:
        """Every user's chats."""
        with self.admin() as admin:
            return list(admin.get("/v1/chats", params={"all_users": True}).json())

    def cli(self, *args: str) -> str:
        """Run `patchbay ARGS` as the admin against this stack; its output."""
        env = {"PATCHBAY_CORE__URL": self.core_url, "PATCHBAY_API_KEY": self.admin_key}
        result = CliRunner().invoke(cli, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.output

    def new_user(self, name: str) -> str:
        """Create a user and return a fresh API key for them."""
        with self.admin() as admin:
            user = admin.post("/v1/users", json={"name": name}).json()
            return str(admin.post(f"/v1/users/{user['id']}/keys", json={}).json()["key"])


@contextmanager
def running_stack(settings: Settings) -> Iterator[Stack]:
    with ExitStack() as stack:
        core_url = stack.enter_context(serve_in_thread(create_core(settings), settings.core.port))
        openai_url = stack.enter_context(
            serve_in_thread(create_openai(settings), settings.openai.port)
        )
        assert settings.admin_key is not None
        yield Stack(settings, core_url, openai_url, settings.admin_key.get_secret_value())


def register_models(stack: Stack, upstream_url: str) -> None:
    """The mock upstream as `mock-gpt` (the default) and the llm-echo plugin as `echo`."""
    with stack.admin() as admin:
        for provider in (
            {"name": "mock", "kind": "openai", "api_base": upstream_url, "api_key": "sk-mock"},
            {"name": "plugins", "kind": "llm"},
        ):
            admin.post("/v1/providers", json=provider).raise_for_status()
        for model in (
            {
                "name": "mock-gpt",
                "provider": "mock",
                "upstream_model": "gpt-mock",
                "is_default": True,
            },
            {"name": "echo", "provider": "plugins"},
        ):
            admin.post("/v1/models", json=model).raise_for_status()
