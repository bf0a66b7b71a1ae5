"""A channel written as a plugin, with senders resolved by policy: pairing, open, allowlist."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from patchbay.channels.runner import create_app
from patchbay.plugins.manager import build_plugin_manager, channel_classes
from tests.conftest import free_port
from tests.support import postcard
from tests.support.servers import serve_in_thread
from tests.support.stack import Stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration


def channel_url(stack: Stack, policy: str) -> Iterator[str]:
    manager = build_plugin_manager(entry_points=False)
    manager.register(postcard)
    channel = channel_classes(manager)["postcard"]
    port = free_port()
    settings = stack.settings.model_copy(
        update={"channels": {"postcard": {"policy": policy, "port": port}}}
    )
    with serve_in_thread(create_app(settings, channel), port) as url:
        yield url


@pytest.fixture(params=["pairing"])
def postcards(request: pytest.FixtureRequest, stack: Stack) -> Iterator[str]:
    yield from channel_url(stack, request.param)


def send(url: str, sender: str, text: str) -> list[str]:
    response = httpx.post(f"{url}/inbound", json={"sender": sender, "text": text}, timeout=30)
    response.raise_for_status()
    return list(response.json())


def test_a_plugin_channel_is_small() -> None:
    source = Path(postcard.__file__).read_text().splitlines()
    lines = [line for line in source if line.strip()]
    assert len(lines) < 50


def test_pairing_then_answers_in_pieces(
    stack: Stack, upstream: MockUpstream, postcards: str
) -> None:
    (first,) = send(postcards, "ann@example.org", "hello")
    code = re.search(r"code is ([A-Z0-9]{8})", first)
    assert code, first
    assert send(postcards, "ann@example.org", "hello again")[0] == first  # same code, no new one
    assert code.group(1) in stack.cli("pairing", "list")
    stack.cli("pairing", "approve", "postcard", code.group(1))
    pieces = send(postcards, "ann@example.org", "hello")
    assert " ".join(pieces) == upstream.reply and all(len(p) <= 40 for p in pieces)
    assert "ann@example.org" in stack.cli("identities", "list")
    # the same sender's next postcard continues the same chat
    send(postcards, "ann@example.org", "more")
    with stack.admin() as admin:
        user = next(u for u in admin.get("/v1/users").json() if "ann" in u["name"])
        assert user["role"] == "user"


def test_open_and_allowlist_policies(stack: Stack, upstream: MockUpstream) -> None:
    for url in channel_url(stack, "open"):
        assert " ".join(send(url, "+15550001", "hi")) == upstream.reply
    for url in channel_url(stack, "allowlist"):
        assert "may not use" in send(url, "+15550002", "hi")[0]
        stack.cli("users", "create", "bob", "--no-with-key")
        stack.cli("identities", "link", "bob", "postcard", "+15550002")
        assert " ".join(send(url, "+15550002", "hi")) == upstream.reply


def test_only_modules_may_resolve_senders_or_act_for_users(stack: Stack) -> None:
    body = {"channel": "postcard", "address": "x", "policy": "open"}
    assert httpx.post(f"{stack.core_url}/v1/senders/resolve", json=body).status_code == 401
    forged = httpx.get(
        f"{stack.core_url}/v1/me",
        headers={"X-Patchbay-As-User": "1", "X-Patchbay-Module-Token": "guess"},
    )
    assert forged.status_code == 401
