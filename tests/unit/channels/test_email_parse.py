"""Reading incoming mail: sender, text, files, thread, and the mail that cannot become a turn."""

from __future__ import annotations

import base64
from email import policy
from email.message import EmailMessage

import pytest

from patchbay.channels.email.htmltext import html_to_text
from patchbay.channels.email.parse import UnreadableMail, parse_mail, strip_quoted

SMTP = policy.default.clone(linesep="\r\n")


def mail(text: str = "Hello", **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Ann Example <Ann@Example.org>"
    message["To"] = "ai@patchbay.test"
    message["Subject"] = "Question"
    for name, value in headers.items():
        del message[name.replace("_", "-")]
        message[name.replace("_", "-")] = value
    message.set_content(text)
    return message


def raw(content_type: str, body: str, subject: str = "Broken") -> bytes:
    head = f"From: ann@example.org\r\nSubject: {subject}\r\nContent-Type: {content_type}\r\n\r\n"
    return (head + body + "\r\n").encode()


def test_a_plain_mail_is_sender_subject_and_body() -> None:
    parsed = parse_mail(mail(Message_ID="<m1@example.org>").as_bytes(policy=SMTP))
    assert (parsed.sender, parsed.display_name) == ("ann@example.org", "Ann Example")
    assert parsed.prompt == "Question\n\nHello"
    assert (parsed.key, parsed.thread, parsed.references) == ("<m1@example.org>",) * 2 + ((),)
    assert not parsed.automatic and parsed.attachments == ()


@pytest.mark.parametrize(
    ("headers", "thread"),
    [
        ({"References": "<root@x> <mid@x>", "In_Reply_To": "<mid@x>"}, "<root@x>"),
        ({"In_Reply_To": "<parent@x>"}, "<parent@x>"),
        ({}, "<own@x>"),
    ],
)
def test_the_thread_is_the_first_message_id(headers: dict[str, str], thread: str) -> None:
    parsed = parse_mail(mail(Message_ID="<own@x>", **headers).as_bytes())
    assert parsed.thread == thread


def test_a_reply_sends_only_its_new_text() -> None:
    text = "Thanks!\nOne more thing.\n\nOn Mon, Bot wrote:\n> old answer\n> more\n\n-- \nAnn\n"
    parsed = parse_mail(mail(text, References="<root@x>", Subject="Re: Question").as_bytes())
    assert parsed.prompt == "Thanks!\nOne more thing."


def test_strip_quoted_keeps_a_wrote_line_that_quotes_nothing() -> None:
    assert strip_quoted("He wrote:") == "He wrote:"


def test_without_a_message_id_the_key_is_a_stable_digest() -> None:
    one, two = (parse_mail(mail().as_bytes()) for _ in range(2))
    assert one.message_id is None and one.key.startswith("sha256:") and one.key == two.key


def test_an_html_only_mail_becomes_text() -> None:
    message = mail()
    message.set_content(
        "<html><head><style>p{}</style></head><body><p>Hi&amp;bye</p><ul><li>one</li></ul>"
        "<script>x()</script></body></html>",
        subtype="html",
    )
    assert parse_mail(message.as_bytes()).body == "Hi&bye\n\n- one"


def test_html_to_text_drops_hidden_parts() -> None:
    assert html_to_text("<title>t</title>a<br>b") == "a\nb"


def test_files_become_attachments_but_inline_pictures_do_not() -> None:
    message = mail()
    message.set_content("<p>Hello <img src='cid:logo'></p>", subtype="html")
    message.add_related(b"\x89PNG", "image", "png", cid="<logo>")  # multipart/related
    assert parse_mail(message.as_bytes()).attachments == ()
    message.add_attachment(b"note", "text", "plain", filename="n.txt")
    parsed = parse_mail(message.as_bytes())
    (attachment,) = parsed.attachments
    assert (attachment.media_type, attachment.filename) == ("text/plain", "n.txt")
    assert base64.b64decode(attachment.data) == b"note" and parsed.body == "Hello"


def test_a_mail_that_is_one_file_is_an_attachment() -> None:
    parsed = parse_mail(raw("application/pdf", "JVBERg==\r\n", subject="A file"))
    assert [a.media_type for a in parsed.attachments] == ["application/pdf"]


@pytest.mark.parametrize(
    ("message", "says"),
    [
        (
            raw(
                "multipart/alternative; boundary=X",
                "--X\r\nContent-Type: image/png\r\n\r\nx\r\n--X--",
            ),
            "no text part",
        ),
        (raw("multipart/mixed; boundary=X", "no parts"), "MIME structure is broken"),
        (raw("text/plain", "", subject=""), "empty"),
        (b"From: a@x, b@y\r\n\r\nhi\r\n", "exactly one address"),
        (b"\xff\xfe\x00garbage", "exactly one address"),
    ],
)
def test_mail_that_cannot_become_a_turn_says_why(message: bytes, says: str) -> None:
    with pytest.raises(UnreadableMail, match=says):
        parse_mail(message)


def test_a_lying_charset_is_read_as_utf8() -> None:
    parsed = parse_mail(raw("text/plain; charset=no-such-charset", "caf\u00e9"))
    assert parsed.body == "caf\u00e9"


def test_too_many_files_are_refused() -> None:
    message = mail()
    for n in range(21):
        message.add_attachment(b"x", "text", "plain", filename=f"{n}.txt")
    with pytest.raises(UnreadableMail, match="at most 20"):
        parse_mail(message.as_bytes())


@pytest.mark.parametrize(
    "header",
    [
        {"Auto_Submitted": "auto-replied"},
        {"Precedence": "bulk"},
        {"Precedence": "auto_reply"},
        {"Precedence": "list"},
        {"X_Autoreply": "yes"},
        {"X_Autorespond": "I am away"},
        {"List_Id": "<talk.lists.example.org>"},
    ],
)
def test_automatic_mail_is_marked(header: dict[str, str]) -> None:
    assert parse_mail(mail(**header).as_bytes()).automatic


def test_a_mail_whose_headers_are_too_large_is_refused_before_it_is_parsed() -> None:
    """The parser's time grows faster than a header: a few hundred KB of encoded words took it
    seconds, on the channel's loop."""
    words = b" ".join([b"=?utf-8?q?w=C3=B6rd?="] * 20_000)  # 440 KB, as sent (not built here)
    raw = b"From: Ann <ann@example.org>\r\nSubject: " + words + b"\r\n\r\nHello\r\n"
    with pytest.raises(UnreadableMail, match="headers are over 64 KB"):
        parse_mail(raw)


def test_a_mail_of_too_many_parts_is_refused() -> None:
    message = mail()
    for n in range(501):
        message.add_attachment(b"", "text", "plain", filename=f"{n}.txt")
    with pytest.raises(UnreadableMail, match="over 500 parts"):
        parse_mail(message.as_bytes())
