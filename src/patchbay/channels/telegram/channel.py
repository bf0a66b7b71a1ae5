"""The Telegram channel: a bot in webhook mode (`POST /telegram/webhook`). Each message is a turn in
the sender's chat for that Telegram chat; the answer goes back with `sendMessage`, in pieces of at
most 4,096 characters, paced to Telegram's limits.

The webhook answers at once and the turn runs after it, so a slow answer does not make Telegram
deliver the update again; an update delivered twice anyway is answered once: caught by its
`update_id` while the channel remembers it, and by the core (the bot, chat and message ids are the
turn's `delivery_id`) after a restart.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request
from pydantic import Field, SecretStr, ValidationError, field_validator

from patchbay.channels.base import Channel, ChannelSettings, chunks
from patchbay.channels.limits import RecentIds
from patchbay.channels.owed import OwedAnswers, OwedSettings
from patchbay.channels.telegram.botapi import BotApi, BotApiError, Pace
from patchbay.channels.telegram.conversations import Conversations, Inbound, outcome_text
from patchbay.channels.telegram.files import fetch_files
from patchbay.channels.telegram.schemas import Message, Update, User
from patchbay.client import CoreClient
from patchbay.plugins import hookimpl
from patchbay.plugins.hookspecs import RegisterChannel
from patchbay.schemas.jobs import JobEvent
from patchbay.schemas.turns import AttachmentIn

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
WEBHOOK_PATH = "/telegram/webhook"
MAX_UPDATE_BYTES = 1_000_000  # updates are small JSON; a file comes as a reference to fetch
SETUP_RETRY_S = (1.0, 5.0, 30.0, 60.0)  # waits between setWebhook attempts, the last repeated
SECRET_FORMAT = re.compile(r"[A-Za-z0-9_-]{1,256}")
MAX_PARTLY_SENT = 10_000  # answers remembered as partly sent
# Telegram's /start, sent when someone opens the bot (`/start@bot` in a group, `/start PAYLOAD`
# from a link): no question yet.
START = re.compile(r"/start(@\w+)?(\s|$)")


class TelegramSettings(ChannelSettings, OwedSettings):
    port: int | None = 8095
    bot_token: SecretStr  # from @BotFather
    # Telegram sends it with every update; 1-256 characters of A-Z, a-z, 0-9, _ and -
    webhook_secret: SecretStr
    public_url: str | None = None  # where Telegram reaches this channel: setWebhook on start
    api_base: str = "https://api.telegram.org"  # a stand-in speaks the same format in tests
    max_message_chars: int = Field(default=4096, ge=1, le=4096)
    chat_interval_s: float = Field(default=1.0, ge=0)  # between messages to one chat
    group_interval_s: float = Field(default=3.0, ge=0)  # in groups (20 a minute)
    per_minute: int = Field(default=20, ge=1)  # messages one sender may send in a minute
    max_file_bytes: int = Field(default=20_000_000, ge=1)  # the Bot API's getFile limit
    shutdown_grace_s: float = Field(default=5.0, ge=0)  # for answers on their way at shutdown
    reply_max_age_h: float = Field(default=24.0, gt=0)  # an answer owed, given up past it

    @field_validator("webhook_secret")
    @classmethod
    def _telegram_accepts(cls, value: SecretStr) -> SecretStr:
        if not SECRET_FORMAT.fullmatch(value.get_secret_value()):
            raise ValueError("use 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value


def question(text: str) -> str:
    """What a message asks: nothing, when it is the bot's /start."""
    return "" if START.match(text.strip()) else text


@dataclass(frozen=True, slots=True)
class Where:
    """Where an answer goes: the chat, the message it replies to, the forum topic it is in."""

    chat_id: int
    message_id: int | None = None
    topic: int | None = None

    @classmethod
    def of(cls, reply: dict[str, object]) -> Where:
        """From a turn's `reply` (see `reply()`)."""
        chat_id, message_id, topic = (reply.get(k) for k in ("chat_id", "message_id", "topic"))
        if not isinstance(chat_id, int):
            raise ValueError(f"not a Telegram chat to answer in: {sorted(reply)}")
        return cls(
            chat_id,
            message_id if isinstance(message_id, int) else None,
            topic if isinstance(topic, int) else None,
        )

    def reply(self) -> dict[str, object]:
        """What the core keeps while the answer is owed."""
        reply: dict[str, object] = {"chat_id": self.chat_id, "message_id": self.message_id}
        if self.topic is not None:
            reply["topic"] = self.topic
        return reply


class TelegramChannel(Channel[TelegramSettings]):
    name = "telegram"
    settings_model = TelegramSettings

    def __init__(self, settings: TelegramSettings, core: CoreClient) -> None:
        super().__init__(settings, core)
        pace = Pace(chat_s=settings.chat_interval_s, group_s=settings.group_interval_s)
        self.api = BotApi(
            lambda: self.http, base_url=settings.api_base, token=settings.bot_token, pace=pace
        )
        self.answers = OwedAnswers.of(core, self.name, settings, self._send, port=settings.port)
        self.conversations = Conversations(self, self.answers, per_minute=settings.per_minute)
        self._updates = RecentIds()
        # A message id is unique in its chat; the bot's own id (the token's first part) keeps a
        # new bot's chats, numbered from 1 again, from being taken for the old one's.
        self._bot_id = settings.bot_token.get_secret_value().split(":", 1)[0]
        self._tasks: set[asyncio.Task[None]] = set()
        # How many pieces of an answer (by chat and message answered) went out before Telegram
        # refused the next one, so the answer tried again does not repeat them.
        self._pieces_sent: dict[Where, int] = {}

    def router(self) -> APIRouter:
        router = APIRouter(tags=["telegram"])

        @router.post(WEBHOOK_PATH)
        async def webhook(
            request: Request,
            secret: Annotated[str | None, Header(alias=SECRET_HEADER)] = None,
        ) -> dict[str, bool]:
            self._check_secret(secret)
            body = await request.body()
            if len(body) > MAX_UPDATE_BYTES:
                raise HTTPException(413, "a Telegram update is under 1 MB")
            try:
                update = Update.model_validate_json(body)
            except ValidationError as exc:
                raise HTTPException(400, "not a Telegram Update") from exc
            self.accept(update)
            return {"ok": True}

        return router

    def _check_secret(self, given: str | None) -> None:
        expected = self.settings.webhook_secret.get_secret_value().encode()
        if given is None or not hmac.compare_digest(given.encode(), expected):
            logger.warning("telegram: an update with a wrong secret token was refused")
            raise HTTPException(401, f"wrong or missing {SECRET_HEADER}")

    def accept(self, update: Update) -> None:
        """Answer `update` in the background, unless it was seen before or is not for us."""
        if not self._updates.add(str(update.update_id)):
            logger.info("telegram: update %d delivered again; not answered", update.update_id)
            return
        message = update.message
        if message is None or message.sender is None or message.sender.is_bot:
            return
        task = asyncio.create_task(self._handle(message, message.sender))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("telegram: a message was not answered", exc_info=task.exception())

    async def _handle(self, message: Message, sender: User) -> None:
        text = question(message.text or message.caption or "")

        async def files() -> list[AttachmentIn]:
            return await fetch_files(self.api, message, max_bytes=self.settings.max_file_bytes)

        where = Where(message.chat.id, message.message_id, message.topic)
        chat = str(message.chat.id)
        inbound = Inbound(
            address=str(sender.id),
            thread=chat if where.topic is None else f"{chat}/{where.topic}",  # a topic: a chat
            text=text,
            reply_to=where.reply(),
            display_name=sender.display_name,
            metadata={"telegram_message_id": message.message_id},
            files=files,
            delivery_id=f"{self._bot_id}/{message.chat.id}/{message.message_id}",
        )

        async def note(text: str) -> None:
            try:
                await self.deliver(where, text)
            except BotApiError as exc:
                logger.error("telegram: a note to chat %d was not sent (%s)", message.chat.id, exc)

        await self.conversations.handle(inbound, note)

    async def _send(self, reply: dict[str, object], outcome: JobEvent) -> bool:
        """Send an answer owed to a chat; False when Telegram is away or busy."""
        where = Where.of(reply)
        try:
            await self.deliver(where, outcome_text(outcome), resume=True)
        except BotApiError as exc:
            if not exc.retryable:  # the bot was blocked, the chat is gone: it never will go
                raise ValueError(exc.message) from exc
            logger.warning("telegram: an answer to chat %d waits (%s)", where.chat_id, exc.message)
            return False
        self._pieces_sent.pop(where, None)
        return True

    async def deliver(self, where: Where, text: str, *, resume: bool = False) -> None:
        """Send `text` to the chat in pieces Telegram accepts; the first replies to the message.
        With `resume`, an answer tried again goes on after the pieces that went out before.
        Raises `BotApiError`."""
        done = self._pieces_sent.get(where, 0) if resume else 0
        for number, piece in enumerate(chunks(text, self.settings.max_message_chars)):
            if number < done:
                continue
            reply_to = where.message_id if not number else None
            try:
                await self.api.send_message(
                    where.chat_id, piece, reply_to=reply_to, topic=where.topic
                )
            except BotApiError as exc:
                if exc.migrated_to is None:
                    raise
                # The group became a supergroup (a new chat id, its messages numbered anew):
                # the answer goes there, whole.
                logger.info("telegram: chat %d is now %d", where.chat_id, exc.migrated_to)
                await self.deliver(Where(exc.migrated_to), text)
                return
            if resume:
                self._pieces_sent[where] = number + 1
                while len(self._pieces_sent) > MAX_PARTLY_SENT:
                    del self._pieces_sent[next(iter(self._pieces_sent))]

    async def run(self) -> None:
        """Point Telegram's webhook here (when a public URL is set), and send the answers still
        owed (after a restart, or Telegram away), now and then."""
        await asyncio.gather(self._point_webhook(), self.answers.sweep_forever())

    async def _point_webhook(self) -> None:
        """Set Telegram's webhook to this channel, retrying until it is done."""
        if not self.settings.public_url:
            return
        url = self.settings.public_url.rstrip("/") + WEBHOOK_PATH
        for attempt in itertools.count():
            try:
                await self.api.set_webhook(url, secret=self.settings.webhook_secret)
            except BotApiError as exc:
                delay = SETUP_RETRY_S[min(attempt, len(SETUP_RETRY_S) - 1)]
                logger.error("telegram: setWebhook failed (%s); again in %.0fs", exc, delay)
                await asyncio.sleep(delay)
            else:
                logger.info("telegram: webhook set to %s", url)
                return

    async def close(self) -> None:
        """Give answers on their way a moment to go out, then stop."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.settings.shutdown_grace_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.answers.close()  # those not sent stay owed, for the next start
        await super().close()


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(TelegramChannel)
