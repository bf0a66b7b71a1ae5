"""Email channel: mail received by SMTP (or read from an IMAP mailbox) becomes a turn in the
sender's chat for its mail thread; the answer goes back through an SMTP relay as a proper reply."""

from __future__ import annotations

import asyncio
import logging

from patchbay.channels.base import Channel
from patchbay.channels.email.imap import ImapPoller
from patchbay.channels.email.inbox import Inbox
from patchbay.channels.email.relay import Relay
from patchbay.channels.email.settings import EmailSettings
from patchbay.channels.email.smtp import serve_smtp
from patchbay.plugins import hookimpl
from patchbay.plugins.hookspecs import RegisterChannel

logger = logging.getLogger(__name__)


class EmailChannel(Channel[EmailSettings]):
    name = "email"
    settings_model = EmailSettings

    async def run(self) -> None:
        """The SMTP server, the sweep for answers owed, and the IMAP poller when a mailbox is set,
        until cancelled."""
        own = self.settings
        smtp_log = logging.getLogger("mail.log")  # aiosmtpd logs every SMTP command at INFO
        if smtp_log.level == logging.NOTSET:
            smtp_log.setLevel(logging.WARNING)
        inbox = Inbox(self, Relay(own.relay, tries=own.reply_tries, retry_s=own.reply_retry_s))
        try:
            server = await serve_smtp(inbox, own)
        except OSError:
            logger.exception("cannot listen for SMTP on %s:%d", own.smtp_host, own.smtp_port)
            raise
        logger.info("SMTP on %s:%d takes mail for <%s>", own.smtp_host, own.smtp_port, own.address)
        background = [asyncio.create_task(inbox.answers.sweep_forever())]
        if own.imap:
            background.append(asyncio.create_task(ImapPoller(own.imap, inbox).run()))
        try:
            async with server:
                await server.serve_forever()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await inbox.close()


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(EmailChannel)
