"""The mails the channel sends: an answer as a proper reply (Re: subject, In-Reply-To,
References) so mail clients thread it, and the pairing note for a sender not let in yet."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, quote

from patchbay.channels.email.parse import InboundMail

RE_PREFIX = re.compile(r"^\s*((re|aw|sv|antw)(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
MAX_REFERENCES = 20  # RFC 5322 lets a long thread's References be trimmed in the middle


@dataclass(frozen=True, slots=True)
class ReplyTo:
    """What a reply needs of the mail it answers. The core keeps it with the turn while the
    answer is owed, so a restarted channel can still reply properly."""

    sender: str
    display_name: str | None
    subject: str
    message_id: str | None
    references: tuple[str, ...]

    @classmethod
    def of(cls, mail: InboundMail) -> ReplyTo:
        """Kept with the turn: the thread's references as a reply carries them (trimmed)."""
        references = tuple(references_of(mail)[:-1] if mail.message_id else references_of(mail))
        return cls(mail.sender, mail.display_name, mail.subject, mail.message_id, references)

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "references": list(self.references)}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ReplyTo:
        """Raises ValueError when `data` is not a reply this channel stored."""
        sender, name, subject = data.get("sender"), data.get("display_name"), data.get("subject")
        message_id, references = data.get("message_id"), data.get("references")
        if not (
            isinstance(sender, str)
            and sender
            and isinstance(name, str | None)
            and isinstance(subject, str)
            and isinstance(message_id, str | None)
            and isinstance(references, list)
            and all(isinstance(r, str) for r in references)
        ):
            raise ValueError(f"not an email reply: {sorted(data)}")
        return cls(sender, name, subject, message_id, tuple(references))


def reply_subject(subject: str) -> str:
    """`Re: <subject>`, never `Re: Re: <subject>`."""
    rest = RE_PREFIX.sub("", subject).strip()
    return f"Re: {rest or '(no subject)'}"


def references_of(mail: InboundMail | ReplyTo) -> list[str]:
    """The thread so far, this mail last; the first (the root) is always kept."""
    chain = [*mail.references, *([mail.message_id] if mail.message_id else [])]
    if len(chain) > MAX_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1) :]]
    return chain


def reply(mail: InboundMail | ReplyTo, *, sender: str, text: str) -> EmailMessage:
    """A reply to `mail` from `sender` (the channel's address) saying `text`."""
    if isinstance(mail, InboundMail):
        mail = ReplyTo.of(mail)
    if mail.sender.isascii():
        message = EmailMessage()
        message["From"] = sender
        message["To"] = Address(display_name=mail.display_name or "", addr_spec=mail.sender)
    else:  # RFC 6531: a UTF-8 address goes as it is, in a message whose headers are UTF-8
        message = EmailMessage(policy=policy.SMTPUTF8)
        message["From"] = sender
        name = mail.display_name or ""
        message["To"] = f'"{quote(name)}" <{mail.sender}>' if name else mail.sender
    message["Subject"] = reply_subject(mail.subject)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=domain_of(sender))
    if mail.message_id:
        message["In-Reply-To"] = mail.message_id
    references = references_of(mail)
    if references:
        message["References"] = " ".join(references)
    message["Auto-Submitted"] = "auto-replied"  # RFC 3834: other robots must not answer it
    message.set_content(text)
    return message


def domain_of(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"
