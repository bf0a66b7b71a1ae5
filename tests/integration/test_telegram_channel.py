"""The Telegram channel against a local stand-in for the Bot API that speaks its wire format."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from patchbay.channels.runner import create_app
from patchbay.channels.telegram.botapi import BotApi
from patchbay.errors import PayloadTooLarge
from patchbay.plugins.manager import build_plugin_manager, channel_classes
from patchbay.schemas.helpers import HELPER_KEY_HEADER
from patchbay.tokens import helper_key
from tests.conftest import free_port
from tests.support.hand_helper import running_helper
from tests.support.servers import serve_in_thread
from tests.support.stack import Stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration

TOKEN = "123456:test-token"
SECRET = "s3cret_webhook-token"
NOTE = b"The secret word is pineapple."
update_ids = itertools.count(1000)


@dataclass
class BotApiStandIn:
    """Telegram's Bot API as far as the channel uses it; records every call it gets."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    too_many: int = 0  # answer this many sendMessage calls with 429 first
    too_many_after: int = 0  # ... once this many went through
    delivered: list[dict[str, Any]] = field(default_factory=list)  # sendMessage calls taken
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def method(request: Request) -> Response:
            if request.path_params["token"] != TOKEN:
                return _error(401, "Unauthorized")
            name = request.path_params["method"]
            body = await request.json()
            with self.lock:
                self.calls.append((name, body))
                through = sum(1 for n, _ in self.calls[:-1] if n == "sendMessage")
                if name == "sendMessage" and self.too_many and through >= self.too_many_after:
                    self.too_many -= 1
                    return _error(429, "Too Many Requests: retry after 1", retry_after=1)
                if name == "sendMessage":
                    self.delivered.append(body)
            return JSONResponse({"ok": True, "result": self._result(name, body)})

        async def file(request: Request) -> Response:
            data = self.files.get(request.path_params["path"])
            return Response(data) if data is not None else Response(status_code=404)

        return Starlette(
            routes=[
                Route("/bot{token}/{method}", method, methods=["POST"]),
                Route("/file/bot{token}/{path:path}", file),
            ]
        )

    def _result(self, name: str, body: dict[str, Any]) -> Any:
        if name == "sendMessage":
            chat = {"id": body["chat_id"], "type": "private"}
            return {"message_id": len(self.calls), "chat": chat, "date": 0, "text": body["text"]}
        if name == "getFile":
            path = f"documents/{body['file_id']}"
            return {"file_id": body["file_id"], "file_path": path}
        return True

    def sent(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                body
                for name, body in self.calls
                if name == "sendMessage" and chat_id in (None, body["chat_id"])
            ]

    def wait_sent(self, count: int, chat_id: int | None = None) -> list[dict[str, Any]]:
        wait_until(lambda: len(self.sent(chat_id)) >= count, f"{count} sendMessage calls")
        return self.sent(chat_id)


def _error(status: int, description: str, **parameters: int) -> Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=status)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s}s for {what}")
        time.sleep(0.02)


@pytest.fixture
def bot_api() -> Iterator[tuple[BotApiStandIn, str]]:
    stand_in = BotApiStandIn()
    with serve_in_thread(stand_in.app(), free_port()) as url:
        yield stand_in, url


@dataclass
class Bot:
    url: str  # the channel's
    api: BotApiStandIn

    def post(self, update: dict[str, Any], secret: str | None = SECRET) -> httpx.Response:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        return httpx.post(f"{self.url}/telegram/webhook", json=update, headers=headers)

    def say(self, text: str, *, user: int = 42, update_id: int | None = None) -> dict[str, Any]:
        update = message_update(text, user=user, update_id=update_id)
        assert self.post(update).json() == {"ok": True}
        return update


def message_update(
    text: str | None, *, user: int = 42, update_id: int | None = None, **extra: Any
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": next(update_ids),
        "from": {"id": user, "is_bot": False, "first_name": "Ann", "last_name": "Lee"},
        "chat": {"id": user, "type": "private"},
        "date": int(time.time()),
        **extra,
    }
    if text is not None:
        message["text"] = text
    return {"update_id": update_id or next(update_ids), "message": message}


@pytest.fixture
def bot_settings() -> dict[str, object]:
    return {"policy": "open", "chat_interval_s": 0.01}


@contextmanager
def serving(
    stack: Stack, bot_api: tuple[BotApiStandIn, str], bot_settings: dict[str, object]
) -> Iterator[Bot]:
    stand_in, api_url = bot_api
    channel = channel_classes(build_plugin_manager(entry_points=False))["telegram"]
    port = int(str(bot_settings.get("port", free_port())))  # a restart: given, the same
    own = {"port": port, "bot_token": TOKEN, "webhook_secret": SECRET, "api_base": api_url}
    settings = stack.settings.model_copy(update={"channels": {"telegram": own | bot_settings}})
    with serve_in_thread(create_app(settings, channel), port) as url:
        yield Bot(url, stand_in)


@pytest.fixture
def bot(
    stack: Stack, bot_api: tuple[BotApiStandIn, str], bot_settings: dict[str, object]
) -> Iterator[Bot]:
    with serving(stack, bot_api, bot_settings) as running:
        yield running


@pytest.mark.parametrize("bot_settings", [{"chat_interval_s": 0.01}])  # pairing, the default
def test_pairing_then_an_answer_to_the_message(
    stack: Stack, upstream: MockUpstream, bot: Bot
) -> None:
    bot.say("hello")
    (first,) = bot.api.wait_sent(1)
    code = re.search(r"code is ([A-Z0-9]{8})", first["text"])
    assert code, first
    stack.cli("pairing", "approve", "telegram", code.group(1))
    assert "42" in stack.cli("identities", "list")
    update = bot.say("hello again")
    answer = bot.api.wait_sent(2)[1]
    assert answer["text"] == upstream.reply
    assert answer["chat_id"] == 42
    assert answer["reply_to_message_id"] == update["message"]["message_id"]
    with stack.admin() as admin:
        assert any("42" in u["name"] for u in admin.get("/v1/users").json())


@pytest.mark.parametrize("bot_settings", [{"policy": "allowlist"}])
def test_an_unknown_sender_on_an_allowlist_is_refused(upstream: MockUpstream, bot: Bot) -> None:
    bot.say("let me in")
    (refusal,) = bot.api.wait_sent(1)
    assert "may not use" in refusal["text"]
    assert upstream.requests == []


@pytest.mark.parametrize("secret", ["wrong-secret", None])
def test_a_wrong_or_missing_secret_is_refused_and_nothing_kept(
    stack: Stack, bot: Bot, secret: str | None
) -> None:
    response = bot.post(message_update("hello"), secret=secret)
    assert response.status_code == 401
    time.sleep(0.3)
    assert bot.api.calls == []
    with stack.admin() as admin:
        assert len(admin.get("/v1/users").json()) == 1  # the admin
        assert admin.get("/v1/pairings").json() == []


def test_long_answers_come_in_pieces(upstream: MockUpstream, bot: Bot) -> None:
    upstream.reply = " ".join(f"word{n}" for n in range(2000))  # 16,889 characters
    bot.say("tell me everything")
    wait_until(lambda: "".join(m["text"] for m in bot.api.sent()).endswith("word1999"), "all")
    pieces = [m["text"] for m in bot.api.sent()]
    assert len(pieces) == 5 and all(len(p) <= 4096 for p in pieces)
    assert " ".join(pieces) == upstream.reply
    assert "reply_to_message_id" in bot.api.sent()[0]
    assert all("reply_to_message_id" not in m for m in bot.api.sent()[1:])


def test_a_repeated_update_is_answered_once(upstream: MockUpstream, bot: Bot) -> None:
    update = bot.say("hello")
    assert bot.post(update).json() == {"ok": True}  # Telegram delivering it again
    bot.api.wait_sent(1)
    assert bot.post(update).json() == {"ok": True}
    time.sleep(0.5)
    assert len(bot.api.sent()) == 1
    assert len(upstream.requests) == 1


def test_an_update_delivered_again_after_a_restart_is_not_answered_again(
    stack: Stack,
    upstream: MockUpstream,
    bot_api: tuple[BotApiStandIn, str],
    bot_settings: dict[str, object],
) -> None:
    with serving(stack, bot_api, bot_settings) as bot:
        update = bot.say("hello")
        bot.api.wait_sent(1)
    with serving(stack, bot_api, bot_settings) as bot:  # remembers no update ids
        assert bot.post(update).json() == {"ok": True}
        bot.say("and now?")
        bot.api.wait_sent(2)
        time.sleep(0.5)
    assert len(bot.api.sent()) == 2 and len(upstream.requests) == 2


@pytest.mark.parametrize("bot_settings", [{"policy": "open", "shutdown_grace_s": 0}])
def test_an_answer_the_channel_stopped_before_goes_after_its_restart(
    stack: Stack,
    upstream: MockUpstream,
    bot_api: tuple[BotApiStandIn, str],
    bot_settings: dict[str, object],
) -> None:
    upstream.mode, upstream.delay_s = "slow", 2.0
    bot_settings = {**bot_settings, "port": free_port()}  # restarted on its port, as configured
    with serving(stack, bot_api, bot_settings) as bot:
        update = bot.say("take your time")
        wait_until(lambda: bool(stack.chats()), "the turn stored")  # its answer still coming
    time.sleep(2.0)
    assert bot.api.sent() == []
    with serving(stack, bot_api, bot_settings) as bot:
        (answer,) = bot.api.wait_sent(1)
        time.sleep(0.5)
    assert answer["text"] == upstream.reply
    assert answer["reply_to_message_id"] == update["message"]["message_id"]
    with serving(stack, bot_api, bot_settings):  # sent: owed no more
        time.sleep(0.5)
    assert len(bot.api.sent()) == 1 and len(upstream.requests) == 1


def test_a_429_is_waited_out(upstream: MockUpstream, bot: Bot) -> None:
    bot.api.too_many = 1
    started = time.monotonic()
    bot.say("hello")
    wait_until(lambda: len(bot.api.sent()) == 2, "the retried sendMessage")
    assert time.monotonic() - started >= 1.0  # retry_after
    assert [m["text"] for m in bot.api.sent()] == [upstream.reply] * 2


@pytest.mark.parametrize("bot_settings", [{"policy": "open", "per_minute": 3}])
def test_a_sender_who_floods_gets_one_notice_and_no_more_turns(
    upstream: MockUpstream, bot: Bot
) -> None:
    for n in range(6):
        bot.say(f"message {n}")
    bot.api.wait_sent(4)
    time.sleep(0.5)
    texts = [m["text"] for m in bot.api.sent()]
    assert texts.count(upstream.reply) == 3
    assert sum("faster than I can answer" in t for t in texts) == 1
    assert len(texts) == 4
    assert len(upstream.requests) == 3


def test_answers_within_a_chat_keep_their_order(upstream: MockUpstream, bot: Bot) -> None:
    upstream.mode, upstream.delay_s = "slow", 0.3
    first, second = bot.say("one"), bot.say("two")
    sent = bot.api.wait_sent(2)
    replied = [m["reply_to_message_id"] for m in sent]
    assert replied == [first["message"]["message_id"], second["message"]["message_id"]]


def test_other_updates_and_non_text_are_handled_without_a_turn(
    upstream: MockUpstream, bot: Bot
) -> None:
    assert bot.post({"update_id": next(update_ids), "edited_message": {}}).status_code == 200
    assert bot.post({"no": "update"}).status_code == 400
    response = httpx.post(
        f"{bot.url}/telegram/webhook",
        content=b"not json",
        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
    )
    assert response.status_code == 400
    bot.post(message_update(None, sticker={"file_id": "x"}))
    (answer,) = bot.api.wait_sent(1)
    assert answer["text"] == "Send me a message and I will answer."
    assert upstream.requests == []


def test_a_document_is_read_by_a_helper(stack: Stack, upstream: MockUpstream, bot: Bot) -> None:
    with running_helper() as hand:
        key = {HELPER_KEY_HEADER: helper_key(stack.settings.installation_secret())}
        httpx.post(f"{stack.core_url}/v1/helpers", json=hand.manifest(), headers=key)
        bot.api.files["documents/doc-1"] = NOTE
        document = {"file_id": "doc-1", "file_size": len(NOTE), "mime_type": "text/plain"}
        bot.post(message_update(None, caption="What is the secret word?", document=document))
        (answer,) = bot.api.wait_sent(1)
    assert answer["text"] == upstream.reply
    prompt = str(upstream.requests[-1]["messages"][-1]["content"])
    assert prompt.startswith("What is the secret word?") and NOTE.decode() in prompt


@pytest.mark.parametrize("bot_settings", [{"policy": "open", "max_file_bytes": 10}])
def test_a_file_too_large_is_refused_unread(upstream: MockUpstream, bot: Bot) -> None:
    bot.api.files["documents/big"] = b"x" * 100
    bot.post(message_update(None, document={"file_id": "big", "mime_type": "text/plain"}))
    (answer,) = bot.api.wait_sent(1)
    assert "too large" in answer["text"]
    assert upstream.requests == []


@pytest.mark.parametrize("bot_settings", [{"public_url": "https://bot.example.org/"}])
def test_the_webhook_is_set_on_start(bot: Bot) -> None:
    wait_until(lambda: bool(bot.api.calls), "setWebhook")
    name, body = bot.api.calls[0]
    assert name == "setWebhook"
    assert body["url"] == "https://bot.example.org/telegram/webhook"
    assert body["secret_token"] == SECRET


async def test_a_large_file_is_downloaded_whole(bot_api: tuple[BotApiStandIn, str]) -> None:
    stand_in, api_url = bot_api
    big = bytes(range(256)) * 4_000  # about 1 MB: more than one network read
    stand_in.files["documents/big"] = big
    async with aiohttp.ClientSession() as session:
        api = BotApi(lambda: session, base_url=api_url, token=SecretStr(TOKEN))
        assert await api.download("documents/big", max_bytes=len(big)) == big
        with pytest.raises(PayloadTooLarge):
            await api.download("documents/big", max_bytes=len(big) - 1)


@pytest.mark.parametrize("bot_settings", [{"policy": "open", "owed_sweep_s": 1}])
def test_an_answer_cut_short_by_telegram_goes_on_where_it_stopped(
    upstream: MockUpstream, bot: Bot
) -> None:
    upstream.reply = " ".join(f"word{n}" for n in range(1000))  # two pieces
    bot.api.too_many, bot.api.too_many_after = 4, 1  # the second refused until a later sweep
    bot.say("tell me everything")
    wait_until(lambda: len(bot.api.sent()) >= 6, "the second piece sent again")
    time.sleep(0.5)
    pieces = [m["text"] for m in bot.api.delivered]
    assert " ".join(pieces) == upstream.reply  # the first piece once, not again
    assert "reply_to_message_id" in bot.api.delivered[0]


@pytest.mark.parametrize("bot_settings", [{"policy": "open", "group_interval_s": 0.01}])
def test_answers_in_a_forum_topic_stay_in_the_topic(upstream: MockUpstream, bot: Bot) -> None:
    upstream.reply = " ".join(f"word{n}" for n in range(1000))  # two pieces
    forum = {"id": -100777, "type": "supergroup", "title": "Team", "is_forum": True}
    update = message_update("tell me everything", chat=forum)
    update["message"] |= {"message_thread_id": 9, "is_topic_message": True}
    assert bot.post(update).json() == {"ok": True}
    pieces = bot.api.wait_sent(2, chat_id=-100777)
    assert [m.get("message_thread_id") for m in pieces] == [9, 9]
    bot.say("and in private?")
    assert "message_thread_id" not in bot.api.wait_sent(1, chat_id=42)[0]


@pytest.mark.parametrize("bot_settings", [{"policy": "open", "shutdown_grace_s": 0}])
def test_a_message_waiting_behind_an_answer_is_answered_after_a_restart(
    stack: Stack,
    upstream: MockUpstream,
    bot_api: tuple[BotApiStandIn, str],
    bot_settings: dict[str, object],
) -> None:
    upstream.mode, upstream.delay_s = "slow", 2.0
    bot_settings = {**bot_settings, "port": free_port()}
    with serving(stack, bot_api, bot_settings) as bot:
        bot.say("one")
        second = bot.say("two")  # Telegram was told it arrived: it never sends it again
        wait_until(lambda: bool(stack.chats()), "the first turn stored")
    with serving(stack, bot_api, bot_settings) as bot:
        wait_until(lambda: len(bot.api.sent()) >= 2, "both answers", timeout_s=10)
    replied = [m["reply_to_message_id"] for m in bot.api.sent()]
    assert second["message"]["message_id"] in replied
