"""The SMTP server mail arrives at (aiosmtpd, on the channel's own event loop): recipients other
than the channel's address are refused, and each mail's verdict is the inbox's."""

from __future__ import annotations

import asyncio

from aiosmtpd.smtp import SMTP, Envelope, Session

from patchbay.channels.email.compose import domain_of
from patchbay.channels.email.inbox import Inbox
from patchbay.channels.email.settings import EmailSettings


def envelope_sender(mail_from: str | None) -> str:
    """The MAIL FROM address; "" for the null sender of bounces (`<>`)."""
    return "" if mail_from in (None, "", "<>") else str(mail_from)


class Handler:
    """aiosmtpd's hooks: each answers with an SMTP reply line."""

    def __init__(self, inbox: Inbox, address: str) -> None:
        self.inbox = inbox
        self.address = address.lower()

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook names
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() != self.address:
            return f"550 5.1.1 <{address}>: this server only takes mail for <{self.address}>"
        refusal = await self.inbox.check_sender(envelope_sender(envelope.mail_from))
        if refusal is not None:
            return refusal.line
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        verdict = await self.inbox.receive(raw, mail_from=envelope_sender(envelope.mail_from))
        return verdict.line


async def serve_smtp(inbox: Inbox, settings: EmailSettings) -> asyncio.Server:
    """Listen on `smtp_host:smtp_port`; mail larger than `max_message_bytes` gets a 552."""
    loop = asyncio.get_running_loop()
    handler = Handler(inbox, settings.address)

    def protocol() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=True,
            hostname=domain_of(settings.address),
            ident="patchbay",
            loop=loop,
        )

    return await loop.create_server(protocol, settings.smtp_host, settings.smtp_port)
