"""The XMPP channel: a bot account people chat with from any XMPP client. Each chat message is a
turn in the sender's chat (one chat per bare JID); the answer comes back as chat messages.

The connection runs in `run()`; the runner still serves /healthz over HTTP on `port`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from pydantic import Field

from patchbay.channels.base import Channel, ChannelSettings, chunks, delivery_key
from patchbay.channels.limits import RecentIds
from patchbay.channels.owed import OwedAnswers, OwedSettings
from patchbay.channels.telegram.conversations import Conversations, Inbound, outcome_text
from patchbay.channels.xmpp.connection import ChatMessage, XmppAccount, XmppConnection
from patchbay.client import CoreClient
from patchbay.plugins import hookimpl
from patchbay.plugins.hookspecs import RegisterChannel
from patchbay.schemas.jobs import JobEvent

logger = logging.getLogger(__name__)

# Shorter ids are taken for a client's per-session counter, which may come again with the same
# text in a later session: those are told apart from redeliveries in memory only, not by the core.
MIN_UNIQUE_ID = 16
ONLINE_WAIT_S = 10.0  # an answer waits this long for the bot to be online, then a later sweep


class XmppSettings(ChannelSettings, XmppAccount, OwedSettings):
    port: int | None = 8096  # HTTP, for /healthz
    max_message_chars: int = Field(default=4000, ge=100)  # per message; longer answers in parts
    per_minute: int = Field(default=20, ge=1)  # messages one sender may send in a minute
    shutdown_grace_s: float = Field(default=5.0, ge=0)  # for answers on their way at shutdown
    reply_max_age_h: float = Field(default=24.0, gt=0)  # an answer owed, given up past it


class XmppChannel(Channel[XmppSettings]):
    name = "xmpp"
    settings_model = XmppSettings

    def __init__(self, settings: XmppSettings, core: CoreClient) -> None:
        super().__init__(settings, core)
        self.connection = XmppConnection(settings, self.received)
        self.answers = OwedAnswers.of(core, self.name, settings, self._send, port=settings.port)
        self.conversations = Conversations(self, self.answers, per_minute=settings.per_minute)
        self._seen = RecentIds()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Stay online, sending the answers still owed now and then, until cancelled; then let
        answers on their way go out, and log out."""
        self.connection.start()
        try:
            await self.answers.sweep_forever()
        finally:
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=self.settings.shutdown_grace_s)
            await self.connection.stop()

    def received(self, message: ChatMessage) -> None:
        """Answer `message` in the background (once, if the server delivers it twice)."""
        # Some clients number their messages per session, so the text is part of the key.
        key = f"{message.sender}/{message.id}/{hashlib.sha256(message.body.encode()).hexdigest()}"
        if message.id is not None and not self._seen.add(key):
            logger.info("xmpp: message %s delivered again; not answered", message.id)
            return
        unique = message.id is not None and len(message.id) >= MIN_UNIQUE_ID
        task = asyncio.create_task(self._handle(message, delivery_key(key) if unique else None))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("xmpp: a message was not answered", exc_info=task.exception())

    async def _handle(self, message: ChatMessage, delivery_id: str | None) -> None:
        inbound = Inbound(
            address=message.sender,
            thread=message.sender,
            text=message.body,
            reply_to={"jid": message.sender},
            display_name=message.sender.split("@", 1)[0],
            metadata={"xmpp_id": message.id} if message.id else {},
            delivery_id=delivery_id,
        )

        async def note(text: str) -> None:
            self._say(message.sender, text)

        await self.conversations.handle(inbound, note)

    async def _send(self, reply: dict[str, object], outcome: JobEvent) -> bool:
        """Send an answer owed to a JID; False while the bot is offline (what the connection
        would queue then is lost when the process stops, so the answer stays owed instead)."""
        jid = reply.get("jid")
        if not isinstance(jid, str):
            raise ValueError(f"not a JID to answer: {sorted(reply)}")
        try:
            await asyncio.wait_for(self.connection.online.wait(), ONLINE_WAIT_S)
        except TimeoutError:
            logger.warning("xmpp: offline; an answer to %s waits", jid)
            return False
        self._say(jid, outcome_text(outcome))
        return True

    def _say(self, jid: str, text: str) -> None:
        for piece in chunks(text, self.settings.max_message_chars):
            self.connection.send(jid, piece)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.answers.close()  # those not sent stay owed, for the next start
        await super().close()


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(XmppChannel)
