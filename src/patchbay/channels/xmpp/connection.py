"""The bot's XMPP connection (slixmpp): log in, stay online, hand chat messages over, send answers.

It reconnects after a drop (backing off up to a minute), pings the server to notice a dead link,
and refuses a session that is not encrypted unless the settings allow plaintext. Answers sent
while the connection is down wait in slixmpp's queue for the next session.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from slixmpp import JID, ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.stanza import Message

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0
# What XML 1.0 cannot carry (most control characters, lone surrogates): a server closes the stream
# of a client that sends one, so an answer is stripped of them.
NOT_XML = re.compile(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class XmppAccount(BaseModel):
    """How the bot logs in (a part of the channel's settings)."""

    jid: str  # the bot's account, e.g. patchbay@example.org
    password: SecretStr
    resource: str = "patchbay"
    server_host: str | None = None  # default: the JID's domain (its SRV records, then the name)
    server_port: int = 5222
    direct_tls: bool = False  # TLS from the first byte (port 5223 style) instead of STARTTLS
    require_tls: bool = True  # False: plaintext allowed (a server on loopback)
    ca_file: Path | None = None  # trust this CA (a self-signed server) besides the system's
    ping_interval_s: float = 60.0  # a ping unanswered for 30 s means the link is dead


@dataclass(frozen=True, slots=True)
class ChatMessage:
    sender: str  # the bare JID
    body: str
    id: str | None


OnMessage = Callable[[ChatMessage], None]


def chat_message(stanza: Message, own: str) -> ChatMessage | None:
    """What the bot answers: a chat (or normal) message with a body, from someone else (a
    person: a server's own JID has no user part, and its notices, a MOTD, are not questions)."""
    if stanza["type"] not in ("chat", "normal"):
        return None
    sender = stanza["from"].bare
    body = str(stanza["body"])
    if not stanza["from"].user or not body.strip() or sender == own:
        return None
    return ChatMessage(sender=sender, body=body, id=str(stanza["id"]) or None)


class XmppConnection:
    def __init__(self, account: XmppAccount, on_message: OnMessage) -> None:
        self.account = account
        self.on_message = on_message
        self.online = asyncio.Event()
        self._stopping = False
        self._backoff_s = 1.0
        self._client: ClientXMPP | None = None

    def send(self, to: str, text: str) -> None:
        """Send a chat message (queued until the session is up, if it is down)."""
        if self._client is None:
            raise RuntimeError("the XMPP connection is not running")
        self._client.send_message(mto=JID(to), mbody=NOT_XML.sub("", text), mtype="chat")

    def start(self) -> None:
        """Log in, and stay connected until `stop()`."""
        self._stopping = False
        if self._client is None:
            self._client = self._make_client()
        self._connect()

    async def stop(self) -> None:
        """Log out, after sending what is queued (for up to two seconds)."""
        self._stopping = True
        self.online.clear()
        client = self._client
        if client is None:
            return
        client.cancel_connection_attempt()  # a server that is down: stop trying
        if client.is_connected():
            await client.disconnect(wait=2.0, reason="shutting down")

    def _make_client(self) -> ClientXMPP:
        account = self.account
        jid = JID(account.jid)
        jid.resource = account.resource
        unencrypted = not account.require_tls
        client = ClientXMPP(
            jid,
            account.password.get_secret_value(),
            plugin_config={
                "feature_mechanisms": {
                    "unencrypted_plain": unencrypted,
                    "unencrypted_scram": unencrypted,
                }
            },
        )
        client.enable_direct_tls = account.direct_tls
        client.enable_starttls = not account.direct_tls
        if account.ca_file is not None:
            client.ca_certs = account.ca_file
        client.register_plugin("xep_0199", {"keepalive": True, "interval": account.ping_interval_s})
        client.add_event_handler("session_start", self._session_start)
        client.add_event_handler("message", self._message)
        client.add_event_handler("disconnected", self._disconnected)
        client.add_event_handler("failed_all_auth", self._failed_auth)
        return client

    def _connect(self) -> None:
        client = self._client
        if client is None or self._stopping or client.is_connected() or client.is_connecting():
            return
        target = server_address(self.account)
        if target is None:
            client.connect()
        else:
            client.connect(*target)

    async def _session_start(self, _event: Any) -> None:
        client = self._client
        if client is None:
            return
        if self.account.require_tls and not _encrypted(client):
            logger.error("xmpp: the server offered no TLS; set require_tls=false to allow it")
            client.disconnect(reason="no TLS")
            return
        client.send_presence()
        try:
            await client.get_roster()
        except (IqError, IqTimeout) as exc:  # not needed to chat: online all the same
            logger.warning("xmpp: the server did not give the roster (%s); going on", exc)
        self._backoff_s = 1.0
        self.online.set()
        logger.info("xmpp: online as %s", client.boundjid.full)

    def _message(self, stanza: Message) -> None:
        if self._client is None:
            return
        message = chat_message(stanza, self._client.boundjid.bare)
        if message is not None:
            self.on_message(message)

    def _disconnected(self, reason: Any) -> None:
        self.online.clear()
        if self._stopping:
            return
        delay, self._backoff_s = self._backoff_s, min(self._backoff_s * 2, MAX_BACKOFF_S)
        logger.warning("xmpp: disconnected (%s); reconnecting in %.0fs", reason, delay)
        asyncio.get_running_loop().call_later(delay, self._connect)

    def _failed_auth(self, _event: Any) -> None:
        logger.error("xmpp: the server refused %s's password", self.account.jid)


def server_address(account: XmppAccount) -> tuple[str, int] | None:
    """Where to connect; None: the JID domain's SRV records, then the domain on port 5222."""
    if account.server_host is None and account.server_port == 5222:
        return None
    return account.server_host or JID(account.jid).domain, account.server_port


def _encrypted(client: ClientXMPP) -> bool:
    transport = client.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None
