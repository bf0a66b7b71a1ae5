"""`patchbay chats …` and `patchbay users …` against a running core: the same code path as REST."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from patchbay.cli.main import app
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def cli(stack: Stack, *args: str) -> str:
    env = {"PATCHBAY_CORE__URL": stack.core_url, "PATCHBAY_API_KEY": stack.admin_key}
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_chats_users_and_records_from_the_cli(stack: Stack) -> None:
    cli(stack, "users", "create", "dora", "--no-with-key")
    assert "created chat #1" in cli(stack, "chats", "create", "Plans", "-m", "dora")
    assert "Plans" in cli(stack, "chats", "list")
    with stack.admin() as admin:
        turn = admin.post("/v1/turns?wait=true", json={"text": "hi", "chat_id": "1"}).json()
    assert "Hello from the mock upstream." in cli(stack, "chats", "regenerate", "2")
    shown = cli(stack, "chats", "show", "1")
    assert "#1 user" in shown and "[2/2]" in shown
    cli(stack, "chats", "switch", "1", turn["turn"]["assistant_message_id"])
    assert "[1/2]" in cli(stack, "chats", "show", "1")
    cli(stack, "chats", "rename", "1", "Renamed")
    assert "Renamed" in cli(stack, "chats", "list")

    cli(stack, "users", "recording", "1", "on")
    with stack.admin() as admin:
        admin.post("/v1/instructions", json={"type": "USER_LIST", "data": {}})
    assert "USER_LIST" in cli(stack, "users", "records", "1")
    assert "deleted 1 instruction records" in cli(stack, "users", "records", "1", "--delete")
    cli(stack, "users", "update", "2", "--profile", "ops")
    cli(stack, "chats", "delete", "1")
    with stack.admin() as admin:
        assert admin.get("/v1/chats").json() == []
        assert admin.get("/v1/users/2").json()["profile"] == "ops"
