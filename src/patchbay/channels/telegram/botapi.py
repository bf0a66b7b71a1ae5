"""A small client for Telegram's Bot API: `sendMessage` paced per chat, `setWebhook`, `getFile` and
file downloads. It honours a 429's `retry_after` and retries network errors and 5xx a few times.

The bot token is part of every URL, so URLs are never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import SecretStr

from patchbay.backoff import Backoff
from patchbay.bodies import read_at_most
from patchbay.channels.limits import Pacer, Sleep
from patchbay.channels.telegram.schemas import File
from patchbay.errors import PatchbayError, PayloadTooLarge

logger = logging.getLogger(__name__)

TIMEOUT = aiohttp.ClientTimeout(total=30)
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=300)
MAX_RETRY_AFTER_S = 120.0  # wait at most this long on one 429 before trying again
SERVER_RETRY = Backoff(1.0, cap_s=30.0)  # after no answer or a 5xx


class BotApiError(PatchbayError):
    """Telegram refused a call (`description` says why) or could not be reached."""

    code = "telegram_api_error"
    status = 502
    migrated_to: int | None = None  # the supergroup a group became, which its messages now go to


@dataclass(frozen=True, slots=True)
class Pace:
    """Telegram's limits: about one message a second per chat, 20 a minute in a group, 30 a second
    in all (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this)."""

    chat_s: float = 1.0
    group_s: float = 3.0
    all_s: float = 1 / 30


class BotApi:
    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        *,
        base_url: str,
        token: SecretStr,
        pace: Pace | None = None,
        max_tries: int = 4,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._token = token
        self._pace = pace or Pace()
        self._pacer = Pacer(sleep=sleep)
        self._sleep = sleep
        self._max_tries = max_tries

    async def send_message(
        self, chat_id: int, text: str, *, reply_to: int | None = None, topic: int | None = None
    ) -> None:
        """Send one message (at most 4,096 characters), waiting for the chat's turn to speak;
        in a forum, to its `topic`."""
        payload: dict[str, Any] = {"chat_id": chat_id, "text": text}
        if topic is not None:
            payload["message_thread_id"] = topic
        if reply_to is not None:
            payload["reply_to_message_id"] = reply_to
            payload["allow_sending_without_reply"] = True
        key = str(chat_id)
        await self.call("sendMessage", payload, pace_key=key)

    async def set_webhook(self, url: str, *, secret: SecretStr) -> None:
        payload = {
            "url": url,
            "secret_token": secret.get_secret_value(),
            "allowed_updates": ["message"],
        }
        await self.call("setWebhook", payload)

    async def get_file(self, file_id: str) -> File:
        return File.model_validate(await self.call("getFile", {"file_id": file_id}))

    async def download(self, file_path: str, *, max_bytes: int) -> bytes:
        """A file `getFile` pointed to; refused past `max_bytes` without reading the rest."""
        url = f"{self._base}/file/bot{self._token.get_secret_value()}/{file_path}"
        try:
            async with self._session().get(url, timeout=DOWNLOAD_TIMEOUT) as response:
                if response.status != 200:
                    raise BotApiError(f"downloading a file failed with HTTP {response.status}")
                data = await read_at_most(response, max_bytes)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BotApiError(f"downloading a file failed ({type(exc).__name__})") from exc
        if data is None:
            raise PayloadTooLarge(too_large(max_bytes))
        return data

    async def call(self, method: str, payload: dict[str, Any], *, pace_key: str = "") -> Any:
        """Call `method`, retrying what may pass later; returns its `result`."""
        error = "no attempt made"
        for attempt, wait in enumerate(SERVER_RETRY.delays(self._max_tries), 1):
            if pace_key:
                await self._wait_turn(pace_key)
            status, body = await self._post(method, payload)
            if body.get("ok") is True:
                return body.get("result")
            error = f"{method}: {body.get('description') or f'HTTP {status}'}"
            if status == 429:  # held for whatever is sent next, tried again or not
                self._pacer.hold(pace_key or "*", delay := _retry_after(body))
            if attempt == self._max_tries or not (status in (0, 429) or status >= 500):
                break
            if status == 429:
                logger.warning("telegram: %s rate-limited; retrying in %.0fs", method, delay)
                if not pace_key:
                    await self._sleep(delay)
            else:
                await self._sleep(wait)
        failed = BotApiError(error)
        failed.retryable = status == 429 or status >= 500 or status == 0  # away or busy
        parameters = body.get("parameters")
        migrated = parameters.get("migrate_to_chat_id") if isinstance(parameters, dict) else None
        failed.migrated_to = migrated if isinstance(migrated, int) else None
        raise failed

    async def _wait_turn(self, chat: str) -> None:
        interval = self._pace.group_s if chat.startswith("-") else self._pace.chat_s
        await self._pacer.wait(chat, interval)
        await self._pacer.wait("*", self._pace.all_s)

    async def _post(self, method: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One call: its HTTP status and JSON body (status 0: no answer, or not JSON)."""
        url = f"{self._base}/bot{self._token.get_secret_value()}/{method}"
        try:
            async with self._session().post(url, json=payload, timeout=TIMEOUT) as response:
                body = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.warning("telegram: %s failed (%s)", method, type(exc).__name__)
            return 0, {"description": f"no answer ({type(exc).__name__})"}
        if not isinstance(body, dict):
            return 0, {"description": "an answer that is not a JSON object"}
        return status, body


def too_large(max_bytes: int) -> str:
    return f"that file is too large; I read files up to {max_bytes / 1e6:g} MB"


def _retry_after(body: dict[str, Any]) -> float:
    parameters = body.get("parameters")
    value = parameters.get("retry_after") if isinstance(parameters, dict) else None
    seconds = float(value) if isinstance(value, int | float) else 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
