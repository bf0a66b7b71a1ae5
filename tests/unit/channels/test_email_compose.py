"""Replies are proper replies: Re: subject once, In-Reply-To and References, from our address."""

from __future__ import annotations

import orjson
import pytest

from patchbay.channels.email.compose import ReplyTo, references_of, reply, reply_subject
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


def test_a_reply_kept_as_json_while_owed_makes_the_same_reply() -> None:
    kept = ReplyTo.of(inbound()).to_json()
    again = ReplyTo.from_json(orjson.loads(orjson.dumps(kept)))
    first, later = (reply(m, sender="ai@x", text="hi") for m in (inbound(), again))
    for header in ("To", "Subject", "In-Reply-To", "References"):
        assert first[header] == later[header]


@pytest.mark.parametrize(
    "kept",
    [
        {},
        {"sender": "", "subject": "s", "references": []},
        {"sender": "a@x", "subject": "s", "references": "<m1@x>"},
        {"sender": "a@x", "subject": 1, "references": []},
    ],
)
def test_a_reply_that_is_not_one_is_refused(kept: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not an email reply"):
        ReplyTo.from_json(kept)


def test_a_reply_to_a_utf8_address_keeps_it_as_it_is() -> None:
    """RFC 6531 (SMTPUTF8): the address is not ASCII, and must not have to be."""
    message = reply(
        inbound(sender="jörg@example.de", display_name="Jörg"), sender="ai@x", text="Hi"
    )
    raw = message.as_bytes()
    assert 'To: "Jörg" <jörg@example.de>'.encode() in raw
    assert message["To"].addresses[0].addr_spec == "jörg@example.de"


def test_what_is_kept_for_a_reply_holds_the_thread_trimmed() -> None:
    """A long thread's references are kept as the reply carries them: a bounded size."""
    long_thread = tuple(f"<{n}@lists.example.org>" for n in range(400))
    kept = ReplyTo.of(inbound(references=long_thread))
    assert kept.references[0] == long_thread[0] and len(kept.references) < 20
    assert references_of(kept) == references_of(inbound(references=long_thread))
