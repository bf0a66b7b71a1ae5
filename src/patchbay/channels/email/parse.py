"""Incoming mail as a turn: who wrote, what they asked (subject and body), their files, and which
mail thread (so which chat) it belongs to. Hostile or broken mail raises `UnreadableMail`."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from email.utils import getaddresses

from patchbay.channels.email.htmltext import html_to_text
from patchbay.schemas.turns import AttachmentIn

MESSAGE_ID = re.compile(r"<[^<>\s]+>")
MAX_ATTACHMENTS = 20  # what the core takes with one turn
MAX_NAME = 200  # characters of a display name kept (the core holds no more)
# Past these a mail is refused before it is parsed: the stdlib parser takes time that grows
# faster than the size of a header (seconds for a few hundred KB of encoded words) or the count
# of parts, and real mail comes nowhere near them.
MAX_HEADER_BYTES = 64 * 1024
MAX_PARTS = 500
# Headers only robots send: autoresponders' of old, and mailing lists'.
ROBOT_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress", "List-Id")
MAX_THREAD = 500


class UnreadableMail(Exception):
    """The mail cannot become a turn; the message says why, for the sender."""


@dataclass(frozen=True, slots=True)
class InboundMail:
    sender: str  # the From address, lower-cased
    display_name: str | None
    subject: str
    body: str  # the text, without quoted earlier mails or the signature
    attachments: tuple[AttachmentIn, ...]
    message_id: str | None
    references: tuple[str, ...]  # the thread before this mail, oldest first
    automatic: bool  # a bounce, an auto-reply or bulk mail: never answered
    key: str  # what makes a delivery the same mail: its Message-ID, or a digest

    @property
    def thread(self) -> str:
        """The mail thread's first Message-ID: one thread, one chat."""
        root = self.references[0] if self.references else self.key
        return root if len(root) <= MAX_THREAD else "sha256:" + _digest(root)

    @property
    def prompt(self) -> str:
        """The turn's text: the subject (for a new thread) and the body."""
        if self.references or not self.subject:
            return self.body
        return f"{self.subject}\n\n{self.body}" if self.body else self.subject


def parse_mail(raw: bytes) -> InboundMail:
    """Read a mail as sent (RFC 5322 bytes); raises `UnreadableMail` with a reason."""
    _check_size(raw)
    try:
        return _parse(raw)
    except UnreadableMail:
        raise
    except Exception as exc:  # hostile MIME may break the stdlib parser anywhere
        raise UnreadableMail(
            f"this mail could not be read ({type(exc).__name__}); send it again as plain text"
        ) from exc


def _check_size(raw: bytes) -> None:
    ends = [at for at in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if at >= 0]
    header = min(ends) if ends else len(raw)
    if header > MAX_HEADER_BYTES:
        raise UnreadableMail(f"this mail's headers are over {MAX_HEADER_BYTES // 1024} KB")
    if raw.lower().count(b"content-type:") > MAX_PARTS:
        raise UnreadableMail(f"this mail has over {MAX_PARTS} parts; send fewer")


def _parse(raw: bytes) -> InboundMail:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    sender, name = _sender(message)
    subject = " ".join(str(message.get("Subject", "")).split())
    body_part = message.get_body(preferencelist=("plain", "html"))
    body = strip_quoted(_text_of(body_part)) if body_part is not None else ""
    attachments = tuple(_attachments(message))
    if len(attachments) > MAX_ATTACHMENTS:
        raise UnreadableMail(f"this mail has {len(attachments)} files; send at most 20 at once")
    message_id = next(iter(_ids(message.get("Message-ID"))), None)
    references = _ids(message.get("References")) or _ids(message.get("In-Reply-To"))
    digest = _digest("\n".join([sender, str(message.get("Date", "")), subject, body]))
    mail = InboundMail(
        sender=sender,
        display_name=name[:MAX_NAME] if name else name,  # the core keeps a name this long
        subject=subject,
        body=body,
        attachments=attachments,
        message_id=message_id,
        references=references,
        automatic=_automatic(message),
        key=message_id or "sha256:" + digest,
    )
    if not attachments and (body_part is None or not mail.prompt):
        raise UnreadableMail(_why_empty(message, body_part is not None))
    return mail


def _why_empty(message: EmailMessage, has_text: bool) -> str:
    if message.defects:
        names = ", ".join(sorted({type(d).__name__ for d in message.defects}))
        return f"this mail's MIME structure is broken ({names}); send it again as plain text"
    if not has_text:
        return "this mail has no text part: write your question in its body (plain text or HTML)"
    return "this mail is empty: write your question in its body"


def _sender(message: EmailMessage) -> tuple[str, str | None]:
    found = getaddresses([str(value) for value in message.get_all("From", [])])
    addresses = [(name, addr) for name, addr in found if "@" in addr]
    if len(addresses) != 1:
        raise UnreadableMail("the From header must hold exactly one address")
    name, address = addresses[0]
    return address.strip().lower(), name.strip() or None


def _text_of(part: MIMEPart) -> str:
    try:
        text = part.get_content()
    except (LookupError, UnicodeError):  # an unknown or lying charset: read it as UTF-8
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(text, str):
        return ""
    return html_to_text(text) if part.get_content_subtype() == "html" else text


def strip_quoted(text: str) -> str:
    """The new text of a reply: quoted lines (`> …`), their "… wrote:" line and the signature
    go, since the chat already holds the earlier mails."""
    kept: list[str] = []
    quoted = False
    for line in text.replace("\r\n", "\n").split("\n"):
        if line == "-- ":
            break
        if line.startswith(">"):
            quoted = True
            continue
        kept.append(line.rstrip())
    while kept and not kept[-1]:
        kept.pop()
    if quoted and kept and kept[-1].endswith("wrote:"):
        kept.pop()
    return "\n".join(kept).strip()


def _attachments(message: EmailMessage) -> Iterator[AttachmentIn]:
    if message.is_multipart():
        parts = list(message.iter_attachments())
    else:  # a mail that is one file and nothing else
        readable = message.get_content_maintype() not in ("text", "multipart")  # not broken
        parts = [message] if readable else []
    for part in parts:
        for leaf in part.walk():
            inline = leaf.get_content_disposition() != "attachment" and leaf["Content-ID"]
            if leaf.is_multipart() or inline:  # inline parts are an HTML body's pictures
                continue
            data = leaf.get_payload(decode=True)
            if isinstance(data, bytes) and data:
                filename = leaf.get_filename()
                yield AttachmentIn(
                    media_type=leaf.get_content_type()[:200],
                    data=base64.b64encode(data).decode(),
                    filename=filename[:500] if filename else None,
                )


def _ids(value: object) -> tuple[str, ...]:
    return tuple(MESSAGE_ID.findall(str(value))) if value is not None else ()


def _automatic(message: EmailMessage) -> bool:
    """RFC 3834: robots do not answer robots (auto-replies, bounces, bulk and list mail, and the
    headers of autoresponders that predate it)."""
    auto = str(message.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(message.get("Precedence", "")).strip().lower()
    report = message.get_content_type() == "multipart/report"
    robot = any(name in message for name in ROBOT_HEADERS)
    return (
        auto not in ("", "no")
        or precedence in ("bulk", "junk", "list", "auto_reply")
        or report
        or robot
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
