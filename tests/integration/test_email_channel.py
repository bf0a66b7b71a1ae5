"""The email channel over real SMTP: smtplib sends to it, a local SMTP sink gets its replies."""

from __future__ import annotations

import re
import smtplib
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from patchbay.channels.email import EmailChannel
from patchbay.channels.runner import create_app
from patchbay.schemas.helpers import HELPER_KEY_HEADER
from patchbay.schemas.senders import MODULE_TOKEN_HEADER
from patchbay.tokens import helper_key, module_token
from tests.conftest import free_port
from tests.support.hand_helper import running_helper
from tests.support.servers import serve_in_thread
from tests.support.stack import Stack
from tests.support.tcpproxy import TcpProxy
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration

ADDRESS = "ai@patchbay.test"
ANN = "ann@example.org"
SMTP_POLICY = policy.default.clone(linesep="\r\n")


class Sink:
    """A local SMTP server standing in for the relay: it keeps every mail it is given."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mails: list[EmailMessage] = []
        # It offers SMTPUTF8, as relays commonly do (Postfix since 3.0).
        self.controller = Controller(
            self, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=True
        )

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        mail = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        self.mails.append(mail)
        return "250 OK"

    def wait(self, count: int, timeout_s: float = 20.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout_s
        while len(self.mails) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.mails) >= count, f"{len(self.mails)} mails, expected {count}"
        return self.mails


@pytest.fixture
def sink() -> Iterator[Sink]:
    sink = Sink()
    sink.controller.start()
    try:
        yield sink
    finally:
        sink.controller.stop()


@contextmanager
def email_channel(
    stack: Stack, sink: Sink, core_url: str | None = None, **own: Any
) -> Iterator[int]:
    """Serve the channel; yields its SMTP port once it listens."""
    section = {
        "port": free_port(),
        "smtp_port": free_port(),
        "address": ADDRESS,
        "relay": {"host": "127.0.0.1", "port": sink.port},
        "reply_retry_s": 0.05,
        **own,
    }
    core = stack.settings.core.model_copy(update={"url": core_url or stack.core_url})
    settings = stack.settings.model_copy(update={"channels": {"email": section}, "core": core})
    with serve_in_thread(create_app(settings, EmailChannel), int(section["port"])):
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", section["smtp_port"]), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the SMTP server did not start"
                time.sleep(0.02)
        yield int(section["smtp_port"])


def mail(
    text: str, *, sender: str = ANN, subject: str = "Question", **headers: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Ann <{sender}>"
    message["To"] = ADDRESS
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.org")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text)
    return message


def send(
    port: int, message: EmailMessage | bytes, mail_from: str = ANN, *, say_size: bool = True
) -> tuple[int, str]:
    """Deliver by SMTP: the server's answer (at MAIL, RCPT or the end of DATA) as (code, text)."""
    if isinstance(message, EmailMessage):  # smtplib sends bytes as they are: lines end in CRLF
        message = message.as_bytes(policy=SMTP_POLICY)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo()
        code, text = smtp.mail(mail_from, [f"size={len(message)}"] if say_size else [])
        if code == 250:
            code, text = smtp.rcpt(ADDRESS)
        if code == 250:
            try:
                code, text = smtp.data(message)
            except smtplib.SMTPDataError as exc:
                error = exc.smtp_error
                code, text = exc.smtp_code, error if isinstance(error, bytes) else error.encode()
    return code, text.decode()


def chats(stack: Stack) -> list[dict[str, Any]]:
    """Every email chat, with its messages."""
    with stack.admin() as admin:
        found = admin.get("/v1/chats", params={"all_users": True}).json()
        return [
            {**chat, "messages": admin.get(f"/v1/chats/{chat['id']}/messages").json()}
            for chat in found
            if chat["channel"] == "email"
        ]


def test_a_mail_is_answered_as_a_reply_and_a_thread_is_one_chat(
    stack: Stack, upstream: MockUpstream, sink: Sink
) -> None:
    with email_channel(stack, sink, policy="open") as port:
        first = mail("Hello there")
        assert send(port, first)[0] == 250
        (reply,) = sink.wait(1)
        assert reply["Subject"] == "Re: Question"
        assert reply["In-Reply-To"] == first["Message-ID"] == reply["References"]
        assert (reply["From"], reply["To"]) == (ADDRESS, f"Ann <{ANN}>")
        assert reply.get_content().strip() == upstream.reply
        quoted = f"More please\n\nOn Monday, {ADDRESS} wrote:\n> {upstream.reply}\n"
        second = mail(
            quoted,
            subject="RE: Re: Question",
            In_Reply_To=reply["Message-ID"],
            References=f"{first['Message-ID']} {reply['Message-ID']}",
        )
        assert send(port, second)[0] == 250
        again = sink.wait(2)[1]
        assert again["Subject"] == "Re: Question"
        assert again["References"].split() == [
            first["Message-ID"],
            reply["Message-ID"],
            second["Message-ID"],
        ]
    assert upstream.requests[-1]["messages"][-1]["content"] == "More please"
    (chat,) = chats(stack)
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant"] * 2
    assert chat["messages"][0]["content"] == "Question\n\nHello there"


def test_pairing_then_answers(stack: Stack, upstream: MockUpstream, sink: Sink) -> None:
    with email_channel(stack, sink) as port:
        assert send(port, mail("hello"))[0] == 250
        (note,) = sink.wait(1)
        code = re.search(r"code is ([A-Z0-9]{8})", note.get_content())
        assert code and note["Subject"] == "Re: Question", note.get_content()
        refused = send(port, mail("hello again"))
        assert refused[0] == 550 and code.group(1) in refused[1]  # no second note, a clear no
        assert chats(stack) == []
        stack.cli("pairing", "approve", "email", code.group(1))
        assert send(port, mail("now?"))[0] == 250
        assert sink.wait(2)[1].get_content().strip() == upstream.reply
    assert ANN in stack.cli("identities", "list")


def test_an_attachment_reaches_the_model(stack: Stack, upstream: MockUpstream, sink: Sink) -> None:
    with running_helper() as hand:
        key = {HELPER_KEY_HEADER: helper_key(stack.settings.installation_secret())}
        httpx.post(f"{stack.core_url}/v1/helpers", json=hand.manifest(), headers=key)
        message = mail("What is the secret word?")
        message.add_attachment(b"The secret word is pineapple.", "text", "plain", filename="n.txt")
        with email_channel(stack, sink, policy="open") as port:
            assert send(port, message)[0] == 250
            assert sink.wait(1)[0].get_content().strip() == upstream.reply
    prompt = upstream.requests[-1]["messages"][-1]["content"]
    assert "What is the secret word?" in prompt and "[Attached: n.txt" in prompt
    assert prompt.endswith("The secret word is pineapple.")


def test_core_down_is_a_451_and_a_retry_works(
    stack: Stack, upstream: MockUpstream, sink: Sink
) -> None:
    proxy = TcpProxy("127.0.0.1", stack.settings.core.port)
    try:
        with email_channel(stack, sink, f"http://127.0.0.1:{proxy.port}", policy="open") as port:
            message = mail("Are you there?")
            code, text = send(port, message)
            assert code == 451 and "try again later" in text
            proxy.start()
            assert send(port, message)[0] == 250  # the sender's retry
            assert sink.wait(1)[0].get_content().strip() == upstream.reply
    finally:
        proxy.close()
    assert len(chats(stack)) == 1


def _losing_first_turn_reply(core_url: str) -> Starlette:
    """A proxy to the core that forwards everything but loses the reply to the first turn."""
    lost: list[str] = []

    async def forward(request: Request) -> Response:
        async with httpx.AsyncClient(base_url=core_url) as core:
            answer = await core.request(
                request.method,
                request.url.path,
                params=request.query_params,
                content=await request.body(),
                headers={k: v for k, v in request.headers.items() if k != "host"},
            )
        if request.url.path == "/v1/turns" and not lost:
            lost.append(answer.text)  # stored by the core; the channel never hears of it
            return Response("bad gateway", status_code=502)
        return Response(answer.content, answer.status_code, media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])


def test_a_mail_deferred_after_its_turn_was_stored_is_still_answered(
    stack: Stack, upstream: MockUpstream, sink: Sink
) -> None:
    proxy_port = free_port()
    proxy = _losing_first_turn_reply(stack.core_url)
    with (
        serve_in_thread(proxy, proxy_port),
        email_channel(stack, sink, f"http://127.0.0.1:{proxy_port}", policy="open") as port,
    ):
        message = mail("Did you get this?")
        code, text = send(port, message)
        assert code == 451 and "try again later" in text
        assert len(chats(stack)) == 1  # the core took it; only its reply was lost
        code, text = send(port, message)  # the sender's retry: a duplicate, still unanswered
        assert code == 250 and "the answer comes by mail" in text
        assert sink.wait(1)[0].get_content().strip() == upstream.reply
        assert send(port, message)[0] == 250  # a third delivery: answered once already
        time.sleep(0.5)
    assert len(sink.mails) == 1 and len(upstream.requests) == 1
    assert len(chats(stack)[0]["messages"]) == 2


def test_allowlist_refuses_unknown_and_forged_senders_storing_nothing(
    stack: Stack, upstream: MockUpstream, sink: Sink
) -> None:
    stack.cli("users", "create", "bob", "--no-with-key")
    stack.cli("identities", "link", "bob", "email", "bob@example.org")
    with email_channel(stack, sink, policy="allowlist") as port:
        code, text = send(port, mail("hi", sender="eve@evil.test"), "eve@evil.test")
        assert code == 550 and "may not write here" in text
        forged = mail("hi", sender="bob@example.org")  # From: bob, sent by eve
        assert send(port, forged, "eve@evil.test")[0] == 550
        code, text = send(port, mail("hi", sender="eve@evil.test"), "bob@example.org")
        assert code == 550 and "is not the sender" in text
        assert chats(stack) == [] and sink.mails == []
        with stack.admin() as admin:
            assert admin.get("/v1/pairings").json() == []
        assert send(port, mail("hi", sender="bob@example.org"), "bob@example.org")[0] == 250
        assert sink.wait(1)[0]["To"] == "Ann <bob@example.org>"


def test_a_repeated_delivery_is_answered_once(
    stack: Stack, upstream: MockUpstream, sink: Sink
) -> None:
    message = mail("Once, please")
    with email_channel(stack, sink, policy="open") as port:
        assert send(port, message)[0] == 250
        sink.wait(1)
        code, text = send(port, message)
        assert code == 250 and "answered once" in text
        time.sleep(0.5)
    assert len(sink.mails) == 1
    assert len(chats(stack)[0]["messages"]) == 2


def test_a_mail_delivered_again_after_a_restart_is_not_answered_again(
    stack: Stack, upstream: MockUpstream, sink: Sink
) -> None:
    message = mail("Once, please")
    with email_channel(stack, sink, policy="open") as port:
        assert send(port, message)[0] == 250
        sink.wait(1)
    with email_channel(stack, sink, policy="open") as port:  # remembers no Message-IDs
        code, text = send(port, message)
        assert code == 250 and "answered once" in text
        time.sleep(0.5)
    assert len(sink.mails) == 1 and len(upstream.requests) == 1
    assert len(chats(stack)[0]["messages"]) == 2


def test_a_flooding_sender_is_told_to_wait(
    stack: Stack, upstream: MockUpstream, sink: Sink
) -> None:
    with email_channel(stack, sink, policy="open", max_mails_per_minute=2) as port:
        assert [send(port, mail(f"mail {n}"))[0] for n in range(2)] == [250, 250]
        code, text = send(port, mail("one too many"))
        assert code == 451 and "too many mails" in text
        assert send(port, mail("hi", sender="bob@example.org"), "bob@example.org")[0] == 250
        sink.wait(3)
    assert len(chats(stack)) == 3


def raw_mail(content_type: str, body: str, **headers: str) -> bytes:
    lines = [f"From: {ANN}", f"To: {ADDRESS}", "Subject: broken", f"Content-Type: {content_type}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


@pytest.mark.parametrize(
    ("message", "code", "says"),
    [
        pytest.param(
            raw_mail(
                "multipart/alternative; boundary=X",
                "--X\r\nContent-Type: image/png\r\n\r\nx\r\n--X--",
            ),
            550,
            "no text part",
            id="no-text-part",
        ),
        pytest.param(
            raw_mail("multipart/mixed; boundary=X", "no boundary, no parts"),
            550,
            "MIME structure is broken",
            id="malformed-mime",
        ),
        pytest.param(
            raw_mail("application/x-unknown", "AAAA", Content_Transfer_Encoding="base64"),
            554,
            "into text",
            id="a-file-no-helper-reads",
        ),
        pytest.param(
            raw_mail("text/plain", "Out of office", Auto_Submitted="auto-replied"),
            250,
            "not answered",
            id="an-auto-reply",
        ),
    ],
)
def test_bad_mail_is_refused_clearly_and_stores_nothing(
    stack: Stack, upstream: MockUpstream, sink: Sink, message: bytes, code: int, says: str
) -> None:
    with email_channel(stack, sink, policy="open", max_message_bytes=100_000) as port:
        answer = send(port, message)
        assert answer[0] == code and says in answer[1], answer
        assert send(port, mail("still there?"))[0] == 250  # no crash
        sink.wait(1)
    assert len(chats(stack)) == 1 and len(sink.mails) == 1


def test_a_huge_attachment_is_refused_by_size(
    stack: Stack, upstream: MockUpstream, sink: Sink
) -> None:
    message = mail("Look at this")
    message.add_attachment(b"\0" * 200_000, "application", "octet-stream", filename="big.bin")
    with email_channel(stack, sink, policy="open", max_message_bytes=100_000) as port:
        assert send(port, message)[0] == 552  # at MAIL FROM, from the SIZE it declared
        code, text = send(port, message, say_size=False)
        assert code == 552 and "Too much mail data" in text  # at the end of DATA
    assert chats(stack) == [] and sink.mails == []


def test_the_answer_survives_a_core_and_a_relay_that_go_away(
    stack: Stack, upstream: MockUpstream, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.mode, upstream.delay_s = "slow", 1.0
    core = TcpProxy("127.0.0.1", stack.settings.core.port)
    relay = TcpProxy("127.0.0.1", sink.port)
    core.start()
    section = {"policy": "open", "relay": {"host": "127.0.0.1", "port": relay.port}}
    try:
        with email_channel(
            stack, sink, f"http://127.0.0.1:{core.port}", reply_retry_s=0.3, **section
        ) as port:
            assert send(port, mail("Slowly, please"))[0] == 250
            core.cut()  # the channel loses the job's event stream…
            time.sleep(0.3)
            core.start()  # …and picks it up where it was; the relay is still away
            deadline = time.monotonic() + 20
            while "did not take the mail" not in caplog.text:
                assert time.monotonic() < deadline, "the relay was never tried"
                time.sleep(0.02)
            relay.start()
            assert sink.wait(1)[0].get_content().strip() == upstream.reply
    finally:
        core.close()
        relay.close()
    assert "following job" in caplog.text  # it did lose the stream


def owed(stack: Stack) -> list[dict[str, Any]]:
    module = {MODULE_TOKEN_HEADER: module_token(stack.settings.installation_secret())}
    url = f"{stack.core_url}/v1/deliveries/owed"
    return list(httpx.get(url, params={"channel": "email"}, headers=module).json())


def test_an_answer_owed_when_the_channel_stops_is_sent_after_its_restart(
    stack: Stack, upstream: MockUpstream, sink: Sink
) -> None:
    upstream.mode, upstream.delay_s = "slow", 1.0
    message = mail("Take your time")
    # Restarted on its port, as configured: the same holder, which takes back its answers at once.
    section: dict[str, Any] = {"policy": "open", "port": free_port()}
    with email_channel(stack, sink, **section) as port:
        assert send(port, message)[0] == 250
    assert len(owed(stack)) == 1  # stopped before the answer came: it is still owed
    time.sleep(1.5)
    assert sink.mails == []
    with email_channel(stack, sink, **section):
        (reply,) = sink.wait(1)
        assert reply.get_content().strip() == upstream.reply
        assert reply["Subject"] == "Re: Question"
        assert reply["In-Reply-To"] == message["Message-ID"] == reply["References"]
        assert reply["To"] == f"Ann <{ANN}>"
        deadline = time.monotonic() + 10
        while owed(stack):
            assert time.monotonic() < deadline, "the answer stayed owed after it was sent"
            time.sleep(0.05)
    with email_channel(stack, sink, policy="open") as port:  # owed no more: not sent again
        assert send(port, message)[0] == 250  # and a late redelivery is answered once already
        time.sleep(0.5)
    assert len(sink.mails) == 1 and len(upstream.requests) == 1


def test_an_answer_the_relay_would_not_take_is_sent_by_a_later_sweep(
    stack: Stack, upstream: MockUpstream, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    relay = TcpProxy("127.0.0.1", sink.port)
    section: dict[str, Any] = {"policy": "open", "relay": {"host": "127.0.0.1", "port": relay.port}}
    try:
        with email_channel(stack, sink, reply_tries=1, owed_sweep_s=0.3, **section) as port:
            assert send(port, mail("Hello?"))[0] == 250
            deadline = time.monotonic() + 10
            while "stays owed" not in caplog.text:
                assert time.monotonic() < deadline, "the relay was never tried"
                time.sleep(0.02)
            time.sleep(0.7)  # sweeps meanwhile try again, and the relay still refuses
            assert sink.mails == [] and len(owed(stack)) == 1
            relay.start()
            assert sink.wait(1)[0].get_content().strip() == upstream.reply
            time.sleep(1.0)  # later sweeps find nothing owed
    finally:
        relay.close()
    assert len(sink.mails) == 1 and owed(stack) == []


@pytest.mark.parametrize(
    "holders",
    [("host-a/email", "host-b/email"), (None, None)],
    ids=["two hosts", "one host, default holders"],
)
def test_two_channel_processes_send_each_answer_once(
    stack: Stack, upstream: MockUpstream, sink: Sink, holders: tuple[str | None, str | None]
) -> None:
    # Without holders set, both processes run on this host: the ports they listen on tell them
    # apart (with host/channel alone, each took the other's answers as its own, and sent them).
    upstream.mode, upstream.delay_s = "slow", 1.5
    fast: dict[str, Any] = {"policy": "open", "owed_sweep_s": 0.2}  # 1 s holds, renewed 5 times
    a, b = ({} if holder is None else {"owed_holder": holder} for holder in holders)
    with email_channel(stack, sink, **b, **fast):  # sweeps meanwhile
        with email_channel(stack, sink, **a, **fast) as port_a:
            assert send(port_a, mail("Both of you?"))[0] == 250
            sink.wait(1)
            time.sleep(1.0)  # b's sweeps saw the answer owed all along, held by a
        assert len(sink.mails) == 1
        with email_channel(stack, sink, **a, **fast) as port_a:
            assert send(port_a, mail("And if you stop?"))[0] == 250
            time.sleep(0.5)  # a stops before the answer: b takes it once the lease ran out
        (_first, second) = sink.wait(2)
        time.sleep(1.0)
    assert len(sink.mails) == 2 and second.get_content().strip() == upstream.reply
    assert owed(stack) == []


def test_a_failed_answer_is_said_by_mail(stack: Stack, upstream: MockUpstream, sink: Sink) -> None:
    upstream.mode = "error"
    with email_channel(stack, sink, policy="open") as port:
        assert send(port, mail("Hello?"))[0] == 250
        assert "Write again to try once more" in sink.wait(1)[0].get_content()


def test_a_mail_from_a_utf8_address_is_answered(
    stack: Stack, upstream: MockUpstream, sink: Sink
) -> None:
    """RFC 6531: the channel offers SMTPUTF8, so it must answer such a sender too (the answer was
    given up: its address could not be written into the reply)."""
    jorg = "jörg@example.de"
    message = EmailMessage(policy=policy.SMTPUTF8)
    message["From"] = f"Jörg <{jorg}>"
    message["To"] = ADDRESS
    message["Subject"] = "Frage"
    message["Message-ID"] = make_msgid(domain="example.de")
    message.set_content("Hallo?")
    with email_channel(stack, sink, policy="open") as port:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.ehlo()
            assert smtp.mail(jorg, ["SMTPUTF8"])[0] == 250
            assert smtp.rcpt(ADDRESS)[0] == 250
            assert (
                smtp.data(message.as_bytes(policy=policy.SMTPUTF8.clone(linesep="\r\n")))[0] == 250
            )
        (answer,) = sink.wait(1)
    to = str(answer["To"]).encode("utf-8", "surrogateescape").decode()  # 8-bit, as sent
    assert to.endswith(f"<{jorg}>")
    assert answer.get_content().strip() == upstream.reply


@pytest.mark.parametrize(
    "headers",
    [
        {"From": f"{'Ann ' * 60}<{ANN}>"},  # a display name past what the core keeps
        {"References": " ".join(f"<{n:040d}@lists.example.org>" for n in range(400))},
    ],
    ids=["a long display name", "a long thread"],
)
def test_headers_past_the_cores_limits_are_answered_and_the_session_goes_on(
    stack: Stack, upstream: MockUpstream, sink: Sink, headers: dict[str, str]
) -> None:
    message = mail("hi")
    for name, value in headers.items():
        del message[name]
        message[name] = value
    with email_channel(stack, sink, policy="open") as port:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.ehlo()
            assert smtp.mail(ANN)[0] == 250
            assert smtp.rcpt(ADDRESS)[0] == 250
            assert smtp.data(message.as_bytes(policy=SMTP_POLICY))[0] == 250
            assert smtp.noop()[0] == 250  # in step
        (answer,) = sink.wait(1)
    assert answer.get_content().strip() == upstream.reply
