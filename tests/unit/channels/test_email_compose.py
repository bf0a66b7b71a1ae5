"""Replies are proper replies: Re: subject once, In-Reply-To and References, from our address."""

from __future__ import annotations

import pytest

from patchbay.channels.email.compose import references_of, reply, reply_subject
from patchbay.channels.email.parse import InboundMail


def inbound(**fields: object) -> InboundMail:
    values: dict[str, object] = {
        "sender": "ann@example.org",
        "display_name": "Ann",
        "subject": "Question",
        "body": "Hello",
        "attachments": (),
        "message_id": "<m2@x>",
        "references": ("<m1@x>",),
        "automatic": False,
        "key": "<m2@x>",
    }
    values.update(fields)
    return InboundMail(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Question", "Re: Question"),
        ("Re: Question", "Re: Question"),
        ("RE: re:Question", "Re: Question"),
        ("AW: Re[2]: Frage", "Re: Frage"),
        ("", "Re: (no subject)"),
        ("Regarding taxes", "Re: Regarding taxes"),
    ],
)
def test_reply_subject_has_one_re(subject: str, expected: str) -> None:
    assert reply_subject(subject) == expected


def test_a_reply_threads_under_the_mail() -> None:
    message = reply(inbound(), sender="ai@patchbay.test", text="The answer.")
    assert message["From"] == "ai@patchbay.test"
    assert message["To"] == "Ann <ann@example.org>"
    assert message["Subject"] == "Re: Question"
    assert message["In-Reply-To"] == "<m2@x>"
    assert message["References"] == "<m1@x> <m2@x>"
    assert message["Message-ID"].endswith("@patchbay.test>")
    assert message["Auto-Submitted"] == "auto-replied"
    assert message.get_content().strip() == "The answer."


def test_a_mail_without_a_message_id_gets_a_reply_without_in_reply_to() -> None:
    message = reply(inbound(message_id=None, references=()), sender="ai@x", text="hi")
    assert message["In-Reply-To"] is None and message["References"] is None


def test_long_references_keep_the_root_and_the_latest() -> None:
    chain = tuple(f"<{n}@x>" for n in range(30))
    kept = references_of(inbound(references=chain))
    assert len(kept) == 20 and kept[0] == "<0@x>" and kept[-1] == "<m2@x>"
