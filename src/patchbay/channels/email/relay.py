"""Sending mail through the configured SMTP relay (smtplib in a thread: aiosmtplib is not a
dependency), with a few tries that back off when the relay is away."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from email.message import EmailMessage

from patchbay.backoff import Backoff
from patchbay.channels.email.settings import RelaySettings
from patchbay.errors import ServiceUnavailable

logger = logging.getLogger(__name__)


class RelayUnavailable(ServiceUnavailable):
    """The relay did not take the mail (down, refusing, or a login that failed)."""

    code = "relay_unavailable"


class Relay:
    def __init__(self, settings: RelaySettings, *, tries: int = 1, retry_s: float = 2.0) -> None:
        self.settings = settings
        self.tries = tries
        self.retry_s = retry_s

    async def send(self, message: EmailMessage) -> None:
        """Hand `message` to the relay once; raises `RelayUnavailable`."""
        try:
            await asyncio.to_thread(self._send, message)
        except (smtplib.SMTPException, OSError) as exc:
            raise RelayUnavailable(
                f"the SMTP relay {self.settings.host}:{self.settings.port} did not take the "
                f"mail: {exc}"
            ) from exc

    async def deliver(self, message: EmailMessage) -> bool:
        """Hand `message` to the relay, trying `tries` times; False if it never took it."""
        async for attempt in Backoff(self.retry_s).tries(self.tries):
            try:
                await self.send(message)
                return True
            except RelayUnavailable as exc:
                logger.warning("reply to %s, try %d: %s", message["To"], attempt, exc.message)
        logger.error("gave up sending the reply %s to %s", message["Message-ID"], message["To"])
        return False

    def _send(self, message: EmailMessage) -> None:
        relay = self.settings
        with smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout_s) as smtp:
            if relay.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if relay.username and relay.password is not None:
                smtp.login(relay.username, relay.password.get_secret_value())
            smtp.send_message(message)  # with SMTPUTF8 when an address needs it
