"""The XMPP channel's pure parts: which stanzas are answered, where to connect, its settings."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from slixmpp import JID
from slixmpp.exceptions import IqTimeout
from slixmpp.stanza import Iq, Message

from patchbay.channels.xmpp.channel import XmppChannel, XmppSettings
from patchbay.channels.xmpp.connection import (
    ChatMessage,
    XmppAccount,
    XmppConnection,
    chat_message,
    server_address,
)
from patchbay.client import CoreClient

BOT = "bot@example.org"


def stanza(type_: str = "chat", sender: str = "ann@example.org/phone", body: str = "hi") -> Message:
    message = Message()  # type: ignore[no-untyped-call]
    message["type"] = type_
    message["from"] = JID(sender)
    message["id"] = "m1"
    if body:
        message["body"] = body
    return message


def test_a_chat_message_is_answered_to_the_bare_jid() -> None:
    assert chat_message(stanza(), BOT) == ChatMessage("ann@example.org", "hi", "m1")
    assert chat_message(stanza("normal"), BOT) is not None


@pytest.mark.parametrize(
    "message",
    [
        stanza("groupchat"),
        stanza("error"),
        stanza("headline"),
        stanza(body=""),
        stanza(body="   "),
        stanza(sender=f"{BOT}/other-device"),  # our own
        stanza("normal", sender="example.org"),  # the server's (a MOTD, an announcement)
    ],
)
def test_other_stanzas_are_not_answered(message: Message) -> None:
    assert chat_message(message, BOT) is None


def account(**extra: Any) -> XmppAccount:
    return XmppAccount.model_validate({"jid": BOT, "password": "pw"} | extra)


@pytest.mark.parametrize(
    ("extra", "target"),
    [
        ({}, None),
        ({"server_host": "127.0.0.1", "server_port": 15222}, ("127.0.0.1", 15222)),
        ({"server_host": "xmpp.example.org"}, ("xmpp.example.org", 5222)),
        ({"server_port": 5223}, ("example.org", 5223)),
    ],
)
def test_where_to_connect(extra: dict[str, Any], target: tuple[str, int] | None) -> None:
    assert server_address(account(**extra)) == target


def test_settings_are_flat_with_safe_defaults() -> None:
    own = XmppSettings.model_validate({"jid": BOT, "password": "pw", "policy": "open"})
    assert own.port == 8096 and own.require_tls and not own.direct_tls
    assert "pw" not in repr(own)
    with pytest.raises(ValidationError, match="password"):
        XmppSettings.model_validate({"jid": BOT})


async def test_the_client_follows_the_settings(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    strict = XmppConnection(account(ca_file=ca), lambda _m: None)._make_client()
    assert strict.ca_certs == ca and strict.enable_starttls and not strict.enable_direct_tls
    assert not strict.plugin["feature_mechanisms"].unencrypted_scram
    assert strict.boundjid.full == f"{BOT}/patchbay"
    loose = XmppConnection(account(require_tls=False, direct_tls=True), lambda _m: None)
    client = loose._make_client()
    assert client.plugin["feature_mechanisms"].unencrypted_scram
    assert client.enable_direct_tls and not client.enable_starttls


def test_sending_before_the_connection_runs_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        XmppConnection(account(), lambda _m: None).send("ann@example.org", "hi")


async def test_a_message_delivered_twice_is_answered_once(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = XmppSettings.model_validate({"jid": BOT, "password": "pw"})
    channel = XmppChannel(settings, CoreClient("http://127.0.0.1:9"))
    handled: list[tuple[str, str | None]] = []

    async def handle(message: ChatMessage, delivery_id: str | None) -> None:
        handled.append((message.body, delivery_id))

    monkeypatch.setattr(channel, "_handle", handle)
    first = ChatMessage("ann@example.org", "hi", "m1")
    unique = ChatMessage("ann@example.org", "hi", "5f0c1e2d3b4a69788796a5b4c3d2e1f0")
    for message in (first, first, ChatMessage("ann@example.org", "other", "m1"), first, unique):
        channel.received(message)
    await asyncio.sleep(0)
    # a short id may be a per-session counter: only a unique one is the core's delivery id too
    (key,) = [delivery for body, delivery in handled if delivery is not None]
    assert [body for body, _ in handled] == ["hi", "other", "hi"]
    assert key.startswith("ann@example.org/5f0c1e2d3b4a69788796a5b4c3d2e1f0/")
    await channel.close()


async def test_a_server_that_gives_no_roster_still_has_the_bot_online(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Answers wait for the bot to be online: one that never counted as online kept them all."""
    connection = XmppConnection(account(require_tls=False), lambda _m: None)
    client = connection._client = connection._make_client()

    async def no_roster(**_: object) -> None:
        raise IqTimeout(Iq())  # type: ignore[no-untyped-call]

    monkeypatch.setattr(client, "send_presence", lambda **_: None)
    monkeypatch.setattr(client, "get_roster", no_roster)
    await connection._session_start(None)
    assert connection.online.is_set()
