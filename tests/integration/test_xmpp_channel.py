"""The XMPP channel against a real Prosody on loopback, with a person chatting from slixmpp."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from slixmpp import JID, ClientXMPP
from slixmpp.stanza import Message

from patchbay.channels.runner import create_app
from patchbay.channels.xmpp import channel as xmpp
from patchbay.channels.xmpp.channel import XmppChannel
from patchbay.channels.xmpp.connection import XmppAccount, XmppConnection
from patchbay.plugins.manager import build_plugin_manager, channel_classes
from tests.conftest import free_port
from tests.support.prosody import Prosody, running_prosody
from tests.support.servers import serve_in_thread
from tests.support.stack import Stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration

BOT = ("bot", "bot-password")
ANN = ("ann", "ann-password")
ANSWER_TIMEOUT_S = 20.0


@pytest.fixture
def prosody_tls() -> bool:
    return True


@pytest.fixture
def prosody(tmp_path: Path, prosody_tls: bool) -> Iterator[Prosody]:
    with running_prosody(tmp_path / "prosody", tls=prosody_tls) as server:
        server.add_account(*BOT)
        server.add_account(*ANN)
        server.start()
        yield server


@pytest.fixture
def bot_settings() -> dict[str, object]:
    return {"policy": "open"}


@dataclass
class Bot:
    jid: str
    channel: XmppChannel

    def wait_online(self, timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.channel.connection.online.is_set():
            assert time.monotonic() < deadline, "the bot did not come online"
            time.sleep(0.05)


@pytest.fixture
def bot(stack: Stack, prosody: Prosody, bot_settings: dict[str, object]) -> Iterator[Bot]:
    with serving_bot(stack, prosody, bot_settings) as running:
        yield running


@contextmanager
def serving_bot(stack: Stack, prosody: Prosody, bot_settings: dict[str, object]) -> Iterator[Bot]:
    manager = build_plugin_manager(entry_points=False)
    if not manager.is_registered(xmpp):  # until it is one of the built-in plugins
        manager.register(xmpp)
    channel = channel_classes(manager)["xmpp"]
    port = int(str(bot_settings.get("port", free_port())))  # a restart: given, the same
    own = {
        "port": port,
        "jid": f"{BOT[0]}@localhost",
        "password": BOT[1],
        "server_host": "127.0.0.1",
        "server_port": prosody.port,
        "ca_file": str(prosody.ca_file) if prosody.tls else None,
        "require_tls": prosody.tls,
    }
    settings = stack.settings.model_copy(update={"channels": {"xmpp": own | bot_settings}})
    app = create_app(settings, channel)
    with serve_in_thread(app, port):
        yield Bot(own["jid"], app.state.channel)  # type: ignore[arg-type]


class Person:
    """Someone chatting with the bot from an XMPP client."""

    def __init__(self, prosody: Prosody, user: str, password: str) -> None:
        self.client = ClientXMPP(f"{user}@localhost/phone", password)
        self.client.enable_direct_tls = False
        if prosody.tls:
            self.client.ca_certs = prosody.ca_file
        else:
            self.client.plugin["feature_mechanisms"].unencrypted_scram = True
        self.port = prosody.port
        self.inbox: asyncio.Queue[str] = asyncio.Queue()
        self.client.add_event_handler("message", self._message)

    def _message(self, stanza: Message) -> None:
        if stanza["type"] == "chat" and stanza["body"]:
            self.inbox.put_nowait(str(stanza["body"]))

    def say(self, to: str, text: str) -> None:
        self.client.send_message(mto=JID(to), mbody=text, mtype="chat")

    async def hears(self) -> str:
        return await asyncio.wait_for(self.inbox.get(), ANSWER_TIMEOUT_S)

    @asynccontextmanager
    async def online(self) -> AsyncIterator[Person]:
        started = asyncio.get_running_loop().create_future()
        self.client.add_event_handler("session_start", lambda _e: started.set_result(True))
        self.client.connect("127.0.0.1", self.port)
        await asyncio.wait_for(started, ANSWER_TIMEOUT_S)
        self.client.send_presence()
        try:
            yield self
        finally:
            await self.client.disconnect(wait=1.0)


async def test_a_message_gets_the_models_answer(
    upstream: MockUpstream, prosody: Prosody, bot: Bot
) -> None:
    async with Person(prosody, *ANN).online() as ann:
        ann.say(bot.jid, "hello")
        assert await ann.hears() == "Hello from the mock upstream."
    assert upstream.requests[-1]["messages"][-1]["content"] == "hello"


async def test_an_answer_the_bot_stopped_before_goes_after_its_restart(
    stack: Stack, upstream: MockUpstream, prosody: Prosody
) -> None:
    upstream.mode, upstream.delay_s = "slow", 2.0
    # Restarted on its port, as configured: the same holder, which takes back its answers at once.
    settings: dict[str, object] = {"policy": "open", "shutdown_grace_s": 0, "port": free_port()}
    async with Person(prosody, *ANN).online() as ann:
        with serving_bot(stack, prosody, settings) as first:
            first.wait_online()
            ann.say(first.jid, "take your time")
            deadline = time.monotonic() + ANSWER_TIMEOUT_S
            while not stack.chats():  # once the turn is stored (its answer is still coming)
                assert time.monotonic() < deadline, "the turn was never stored"
                await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)
        assert ann.inbox.empty()
        with serving_bot(stack, prosody, settings):
            assert await ann.hears() == upstream.reply
            await asyncio.sleep(0.5)
        assert ann.inbox.empty()  # once
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("bot_settings", [{"policy": "pairing"}])
async def test_pairing_then_answers(
    stack: Stack, upstream: MockUpstream, prosody: Prosody, bot: Bot
) -> None:
    async with Person(prosody, *ANN).online() as ann:
        ann.say(bot.jid, "hello")
        code = re.search(r"code is ([A-Z0-9]{8})", await ann.hears())
        assert code
        await asyncio.to_thread(stack.cli, "pairing", "approve", "xmpp", code.group(1))
        listed = await asyncio.to_thread(stack.cli, "identities", "list")
        assert "ann@localhost" in listed
        ann.say(bot.jid, "hello again")
        assert await ann.hears() == upstream.reply
    assert len(upstream.requests) == 1  # the first message was not a turn


@pytest.mark.parametrize("bot_settings", [{"policy": "allowlist"}])
async def test_a_sender_not_on_the_allowlist_is_refused(
    upstream: MockUpstream, prosody: Prosody, bot: Bot
) -> None:
    async with Person(prosody, *ANN).online() as ann:
        ann.say(bot.jid, "hello")
        assert "may not use" in await ann.hears()
    assert upstream.requests == []


@pytest.mark.parametrize("bot_settings", [{"policy": "open", "max_message_chars": 100}])
async def test_long_answers_come_in_parts(
    upstream: MockUpstream, prosody: Prosody, bot: Bot
) -> None:
    upstream.reply = " ".join(f"word{n}" for n in range(100))
    async with Person(prosody, *ANN).online() as ann:
        ann.say(bot.jid, "tell me everything")
        parts = [await ann.hears()]
        while not parts[-1].endswith("word99"):
            parts.append(await ann.hears())
    assert len(parts) > 1 and all(len(p) <= 100 for p in parts)
    assert " ".join(parts) == upstream.reply


async def test_the_bot_reconnects_after_the_server_restarts(
    upstream: MockUpstream, prosody: Prosody, bot: Bot
) -> None:
    await asyncio.to_thread(bot.wait_online)
    await asyncio.to_thread(prosody.stop)
    await asyncio.to_thread(prosody.start)
    async with Person(prosody, *ANN).online() as ann:
        ann.say(bot.jid, "are you back?")  # kept offline by Prosody if the bot is not yet
        assert await ann.hears() == upstream.reply
    assert bot.channel.connection.online.is_set()


@pytest.mark.parametrize("prosody_tls", [False])
async def test_plaintext_when_allowed_on_loopback(
    upstream: MockUpstream, prosody: Prosody, bot: Bot
) -> None:
    async with Person(prosody, *ANN).online() as ann:
        ann.say(bot.jid, "hello")
        assert await ann.hears() == upstream.reply


@pytest.mark.parametrize("prosody_tls", [False])
@pytest.mark.parametrize("bot_settings", [{"policy": "open", "require_tls": True}])
async def test_no_login_without_tls_when_tls_is_required(prosody: Prosody, bot: Bot) -> None:
    await asyncio.sleep(2)
    assert not bot.channel.connection.online.is_set()
    assert "Authenticated as bot@localhost" not in prosody.log.read_text()


async def test_a_bot_whose_server_is_down_keeps_trying_and_stops_cleanly() -> None:
    account = XmppAccount(
        jid="bot@localhost", password="pw", server_host="127.0.0.1", server_port=free_port()
    )
    connection = XmppConnection(account, lambda _m: None)
    connection.start()
    await asyncio.sleep(1.5)  # a few refused attempts
    assert not connection.online.is_set()
    await asyncio.wait_for(connection.stop(), 5)


async def test_an_answer_with_characters_xml_cannot_carry_arrives_and_the_bot_stays_online(
    upstream: MockUpstream, prosody: Prosody, bot: Bot
) -> None:
    # A form feed and a terminal escape, as models print them: not allowed in XML 1.0, so sent
    # as they are they break the bot's stream (the server closes it as not well-formed).
    upstream.reply = "Page one.\x0cPage two. \x1b[1mBold\x1b[0m"
    async with Person(prosody, *ANN).online() as ann:
        ann.say(bot.jid, "hello")
        assert await ann.hears() == "Page one.Page two. [1mBold[0m"
        upstream.reply = "Still here."
        ann.say(bot.jid, "and now?")
        assert await ann.hears() == "Still here."
    assert "not-well-formed" not in prosody.log.read_text()


async def test_an_answer_ready_while_the_server_is_down_is_not_lost_to_a_restart(
    stack: Stack, upstream: MockUpstream, prosody: Prosody
) -> None:
    upstream.mode, upstream.delay_s = "slow", 2.0
    settings: dict[str, object] = {"policy": "open", "shutdown_grace_s": 0, "port": free_port()}
    with serving_bot(stack, prosody, settings) as first:
        await asyncio.to_thread(first.wait_online)
        async with Person(prosody, *ANN).online() as ann:
            ann.say(first.jid, "take your time")
            deadline = time.monotonic() + ANSWER_TIMEOUT_S
            while not stack.chats():  # the turn is stored; its answer is still coming
                assert time.monotonic() < deadline, "the turn was never stored"
                await asyncio.sleep(0.05)
        await asyncio.to_thread(prosody.stop)  # the answer comes while the bot is offline
        await asyncio.sleep(3.0)
        assert len(upstream.requests) == 1
    await asyncio.to_thread(prosody.start)
    with serving_bot(stack, prosody, settings):
        async with Person(prosody, *ANN).online() as ann:
            assert await asyncio.wait_for(ann.hears(), 10) == upstream.reply


async def test_the_servers_own_messages_are_not_turns(
    stack: Stack, upstream: MockUpstream, tmp_path: Path
) -> None:
    with running_prosody(tmp_path / "motd", tls=False) as server:
        config = server.config.read_text().replace('"ping"', '"ping", "motd"')
        server.config.write_text(config + 'motd_text = "Welcome! Be nice."\n')
        server.add_account(*BOT)
        server.start()
        with serving_bot(stack, server, {"policy": "open"}) as bot:
            await asyncio.to_thread(bot.wait_online)
            await asyncio.sleep(1.5)  # the MOTD comes right after the bot's first presence
    assert upstream.requests == []
    with stack.admin() as admin:
        assert len(admin.get("/v1/users").json()) == 1  # the admin: no user for the server
