"""Polling an IMAP mailbox (stdlib imaplib, in a thread) for servers that cannot deliver to ours:
each unread mail goes through the inbox like an SMTP one, and what it cannot take now stays
unread for the next poll. Mail refused for good is marked read and logged (there is no one to
answer with an SMTP code)."""

from __future__ import annotations

import asyncio
import imaplib
import logging
import re
import ssl
from collections.abc import Callable, Sequence
from email import policy
from email.parser import BytesHeaderParser
from typing import Protocol

from patchbay.channels.email.inbox import Verdict
from patchbay.channels.email.settings import ImapSettings

logger = logging.getLogger(__name__)

ANGLE = re.compile(r"<([^<>]*)>")


class Receiver(Protocol):
    async def receive(self, raw: bytes, *, mail_from: str | None) -> Verdict: ...


Connect = Callable[[ImapSettings], imaplib.IMAP4]


class ImapFailed(Exception):
    """The IMAP server answered a command with other than OK."""


def connect(settings: ImapSettings) -> imaplib.IMAP4:
    """A logged-in IMAP connection (blocking: run it in a thread)."""
    context = ssl.create_default_context()
    client: imaplib.IMAP4
    if settings.ssl:
        client = imaplib.IMAP4_SSL(settings.host, settings.port, ssl_context=context, timeout=30)
    else:
        client = imaplib.IMAP4(settings.host, settings.port, timeout=30)
        if settings.starttls:
            client.starttls(context)
    client.login(settings.user, settings.password.get_secret_value())
    return client


def return_path(raw: bytes) -> str | None:
    """The envelope sender the delivering server wrote down ("" for a bounce), if it did."""
    value = BytesHeaderParser(policy=policy.default).parsebytes(raw).get("Return-Path")
    found = ANGLE.search(str(value)) if value is not None else None
    return found.group(1).strip() if found else None


class ImapPoller:
    def __init__(
        self, settings: ImapSettings, inbox: Receiver, *, connect: Connect = connect
    ) -> None:
        self.settings = settings
        self.inbox = inbox
        self._connect = connect

    async def run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # a poller's loop boundary: log it, poll again later
                logger.exception("polling %s failed", self.settings.host)
            await asyncio.sleep(self.settings.interval_s)

    async def poll(self) -> int:
        """Read the unread mail once; returns how many were dealt with (marked read)."""
        client = await asyncio.to_thread(self._connect, self.settings)
        try:
            mails = await asyncio.to_thread(_unread, client, self.settings)
            done: list[str] = []
            for uid, raw in mails:
                try:
                    verdict = await self.inbox.receive(raw, mail_from=return_path(raw))
                except Exception:  # a mail nothing foresaw: kept from blocking those after it
                    logger.exception("IMAP mail %s could not be handled; marked read", uid)
                    done.append(uid)
                    continue
                if verdict.code >= 500:
                    logger.warning("IMAP mail %s refused: %s", uid, verdict.line)
                if not 400 <= verdict.code < 500:
                    done.append(uid)
            if done:
                await asyncio.to_thread(_mark_read, client, done)
            return len(done)
        finally:
            await asyncio.to_thread(_logout, client)


def _check(answer: tuple[str, Sequence[object]]) -> Sequence[object]:
    status, data = answer
    if status != "OK":
        raise ImapFailed(f"the IMAP server answered {status}: {data!r}")
    return data


def _unread(client: imaplib.IMAP4, settings: ImapSettings) -> list[tuple[str, bytes]]:
    folder = settings.folder if " " not in settings.folder else f'"{settings.folder}"'
    _check(client.select(folder))
    found = _check(client.uid("SEARCH", "UNSEEN"))
    first = found[0] if found else b""
    uids = first.decode().split()[: settings.batch] if isinstance(first, bytes) else []
    mails = []
    for uid in uids:
        fetched = _check(client.uid("FETCH", uid, "(BODY.PEEK[])"))
        raw = next((part[1] for part in fetched if isinstance(part, tuple)), None)
        if isinstance(raw, bytes):
            mails.append((uid, raw))
    return mails


def _mark_read(client: imaplib.IMAP4, uids: list[str]) -> None:
    _check(client.uid("STORE", ",".join(uids), "+FLAGS", r"(\Seen)"))


def _logout(client: imaplib.IMAP4) -> None:
    try:
        client.logout()
    except (imaplib.IMAP4.error, OSError):
        logger.debug("IMAP logout failed", exc_info=True)
