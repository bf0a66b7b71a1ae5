"""Polling IMAP: what the inbox took or refused for good is marked read; what it could not take
now stays unread for the next poll."""

from __future__ import annotations

import imaplib

import pytest

from patchbay.channels.email.imap import ImapFailed, ImapPoller, return_path
from patchbay.channels.email.inbox import Verdict
from patchbay.channels.email.settings import ImapSettings

SETTINGS = ImapSettings(host="imap.example.org", user="ai", password="secret", folder="My Mail")


class FakeMailbox(imaplib.IMAP4):
    """The IMAP commands the poller uses, over a dict of mails by UID (no socket)."""

    def __init__(self, mails: dict[str, bytes], *, select_status: str = "OK") -> None:
        self.mails = mails
        self.marked: set[str] = set()
        self.selected = ""
        self.select_status = select_status
        self.logged_out = False

    def select(self, mailbox="INBOX", readonly=False):
        self.selected = mailbox
        return self.select_status, [str(len(self.mails)).encode()]

    def uid(self, command, *args):
        if command == "SEARCH":
            return "OK", [" ".join(u for u in self.mails if u not in self.marked).encode()]
        if command == "FETCH":
            uid = args[0]
            return "OK", [(f"{uid} (UID {uid} BODY[] {{9}}".encode(), self.mails[uid]), b")"]
        assert command == "STORE" and args[1:] == ("+FLAGS", r"(\Seen)")
        self.marked.update(args[0].split(","))
        return "OK", []

    def logout(self):
        self.logged_out = True
        return "BYE", []


class FakeInbox:
    def __init__(self) -> None:
        self.senders: list[str | None] = []

    async def receive(self, raw: bytes, *, mail_from: str | None) -> Verdict:
        self.senders.append(mail_from)
        if b"busy" in raw:
            return Verdict(451, "4.3.0 try again later")
        if b"poison" in raw:
            raise RuntimeError("a mail nothing foresaw")
        return Verdict(550, "5.6.0 unreadable") if b"junk" in raw else Verdict(250, "2.0.0 ok")


async def test_a_poll_marks_read_what_was_taken_or_refused_for_good() -> None:
    mailbox = FakeMailbox(
        {
            "1": b"Return-Path: <ann@example.org>\r\n\r\nhello",
            "2": b"Subject: x\r\n\r\nbusy",
            "3": b"Return-Path: <>\r\n\r\njunk",
        }
    )
    inbox = FakeInbox()
    poller = ImapPoller(SETTINGS, inbox, connect=lambda _settings: mailbox)
    assert await poller.poll() == 2
    assert mailbox.marked == {"1", "3"} and mailbox.selected == '"My Mail"' and mailbox.logged_out
    assert inbox.senders == ["ann@example.org", None, ""]
    assert await poller.poll() == 0  # the busy one is tried again, and stays unread
    assert inbox.senders[-1] is None and mailbox.marked == {"1", "3"}


async def test_a_mail_that_fails_its_handling_does_not_stop_the_ones_after_it() -> None:
    mailbox = FakeMailbox({"1": b"Subject: x\r\n\r\npoison", "2": b"Subject: y\r\n\r\nhello"})
    inbox = FakeInbox()
    poller = ImapPoller(SETTINGS, inbox, connect=lambda _settings: mailbox)
    assert await poller.poll() == 2
    assert mailbox.marked == {"1", "2"} and len(inbox.senders) == 2


async def test_a_mailbox_that_cannot_be_opened_fails_the_poll_and_logs_out() -> None:
    mailbox = FakeMailbox({}, select_status="NO")
    poller = ImapPoller(SETTINGS, FakeInbox(), connect=lambda _settings: mailbox)
    with pytest.raises(ImapFailed, match="NO"):
        await poller.poll()
    assert mailbox.logged_out


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"Return-Path: <Ann@Example.org>\r\n\r\nx", "Ann@Example.org"),
        (b"Return-Path: <>\r\n\r\nx", ""),
        (b"Subject: none\r\n\r\nx", None),
        ("Return-Path: <jörg@example.de>\r\n\r\nx".encode(), "jörg@example.de"),
    ],
)
def test_return_path_is_the_envelope_sender(raw: bytes, expected: str | None) -> None:
    assert return_path(raw) == expected
