"""Sending SMS through Twilio's REST API (or any gateway speaking its wire format), for answers
that outlast the webhook; paced per sending number, retried when Twilio is busy."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from patchbay.backoff import Backoff
from patchbay.channels.limits import Pacer
from patchbay.channels.sms.segments import segment_count
from patchbay.channels.sms.twilio_format import TwilioSettings, account_auth
from patchbay.errors import PatchbayError

logger = logging.getLogger(__name__)
TRIES = 3
SEND_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)


class SmsNotSent(PatchbayError):
    """Twilio (or the gateway) would not take a message."""

    code = "delivery_failed"
    status = 502


class TwilioMessages:
    """`POST /2010-04-01/Accounts/{sid}/Messages.json` with basic auth and To/From/Body."""

    def __init__(
        self,
        settings: TwilioSettings,
        http: Callable[[], aiohttp.ClientSession],
        *,
        segments_per_s: float = 1.0,
        segment_length: int = 153,
        backoff_s: float = 2.0,
    ) -> None:
        self._settings = settings
        self._http = http
        # Twilio takes about one segment a second from a long code and queues, then refuses, more.
        self._pacer = Pacer()
        self._segment_s = 1 / segments_per_s
        self._segment_length = segment_length
        self._backoff = Backoff(backoff_s)

    async def send(self, *, to: str, from_: str, body: str) -> str:
        """Send one message; returns the SID Twilio gave it."""
        settings = self._settings
        if settings.auth_token is None or not settings.account_sid:
            raise SmsNotSent("set the channel's account_sid and auth_token to send messages")
        url = (
            f"{settings.api_base_url.rstrip('/')}/2010-04-01/Accounts/"
            f"{settings.account_sid}/Messages.json"
        )
        form = {"To": to, "From": from_, "Body": body}
        segments = segment_count(body, segment_length=self._segment_length)
        await self._pacer.wait(from_, segments * self._segment_s)
        async for attempt in self._backoff.tries(TRIES):
            try:
                status, answer = await self._post(url, form)
            except (TimeoutError, aiohttp.ClientError) as exc:
                reason = f"Twilio could not be reached: {exc!r}"
            else:
                if status < 300:
                    return str(answer.get("sid", ""))
                reason = f"Twilio answered {status}: {answer.get('message', '')}"
                if status != 429 and status < 500:
                    raise SmsNotSent(reason)
            logger.warning("sms to %s: try %d of %d failed (%s)", to, attempt, TRIES, reason)
        busy = SmsNotSent(reason)
        busy.retryable = True  # busy or away: later it may go
        raise busy

    async def _post(self, url: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        headers = account_auth(self._settings)
        async with self._http().post(
            url, data=form, headers=headers, timeout=SEND_TIMEOUT
        ) as response:
            raw = await response.read()
        try:
            answer = json.loads(raw)
        except ValueError:  # a proxy's error page, say
            answer = None
        return response.status, answer if isinstance(answer, dict) else {}
