"""The SMS channel end to end: Twilio-format webhooks signed with the `twilio` library, a local
stand-in for Twilio's REST API that records what the channel sends, and the JSON webhook."""

from __future__ import annotations

import base64
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator
from typer.testing import CliRunner

from patchbay.channels.runner import create_app
from patchbay.channels.sms import channel as sms_channel
from patchbay.cli.main import app as cli
from patchbay.plugins.manager import build_plugin_manager, channel_classes
from patchbay.schemas.helpers import HELPER_KEY_HEADER
from patchbay.tokens import helper_key
from tests.conftest import free_port
from tests.support.hand_helper import HandHelper, running_helper
from tests.support.servers import serve_in_thread
from tests.support.stack import Stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration

ACCOUNT_SID = "AC00000000000000000000000000000001"
AUTH_TOKEN = "twilio-auth-token-for-tests"
WEBHOOK_KEY = "gateway-shared-key"
OUR_NUMBER = "+15550100"
ANN = "+15550001"
NOTE = b"The secret word is pineapple."


@dataclass
class TwilioStandIn:
    """Twilio's REST API as far as the channels use it: sending messages, serving media."""

    messages: list[dict[str, str]] = field(default_factory=list)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    url: str = ""

    def app(self) -> Starlette:
        async def send(request: Request) -> Response:
            expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
            sid = request.path_params["sid"]
            if sid != ACCOUNT_SID or request.headers.get("authorization") != f"Basic {expected}":
                error = {"code": 20003, "message": "Authenticate", "status": 401}
                return JSONResponse(error, status_code=401)
            form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
            self.messages.append(form)
            message_sid = f"SM{len(self.messages):032d}"
            body = {"sid": message_sid, "status": "queued", "to": form["To"], "body": form["Body"]}
            return JSONResponse(body, status_code=201)

        async def media(request: Request) -> Response:
            data, kind = self.media[request.path_params["name"]]
            return Response(data, media_type=kind)

        return Starlette(
            routes=[
                Route("/2010-04-01/Accounts/{sid}/Messages.json", send, methods=["POST"]),
                Route("/media/{name}", media),
            ]
        )


@contextmanager
def running_twilio() -> Iterator[TwilioStandIn]:
    stand_in = TwilioStandIn()
    with serve_in_thread(stand_in.app(), free_port()) as url:
        stand_in.url = url
        yield stand_in


def signed_post(
    url: str, params: dict[str, str], *, signed_url: str | None = None
) -> httpx.Response:
    """POST `params` as Twilio does, signed with the account's auth token over the URL called."""
    signature = RequestValidator(AUTH_TOKEN).compute_signature(signed_url or url, params)
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=30)


def parse(response: httpx.Response) -> ET.Element:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    return ET.fromstring(response.text)  # noqa: S314 - the TwiML our own channel wrote


@dataclass
class SmsChannel:
    url: str
    twilio: TwilioStandIn
    sent: int = 0

    def text(self, body: str, *, sender: str = ANN, **extra: str) -> list[str]:
        """Text the channel as Twilio would deliver it; the bodies of the TwiML reply."""
        self.sent += 1
        params = {
            "From": sender,
            "To": OUR_NUMBER,
            "Body": body,
            "MessageSid": f"SM{self.sent:032x}",
            "AccountSid": ACCOUNT_SID,
            "NumMedia": "0",
            **extra,
        }
        root = parse(signed_post(f"{self.url}/sms/twilio", params))
        return [message.text or "" for message in root.findall("Message")]


@pytest.fixture
def twilio() -> Iterator[TwilioStandIn]:
    with running_twilio() as stand_in:
        yield stand_in


@contextmanager
def serving(stack: Stack, twilio: TwilioStandIn, **overrides: object) -> Iterator[SmsChannel]:
    manager = build_plugin_manager(entry_points=False)
    if not manager.is_registered(sms_channel):
        manager.register(sms_channel)
    port = free_port()
    own: dict[str, object] = {
        "port": port,
        "policy": "open",
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "api_base_url": twilio.url,
        "webhook_secret": WEBHOOK_KEY,
        "segments_per_s": 50,
        **overrides,
    }
    settings = stack.settings.model_copy(update={"channels": {"sms": own}})
    with serve_in_thread(create_app(settings, channel_classes(manager)["sms"]), port) as url:
        yield SmsChannel(url, twilio)


@pytest.fixture
def sms(stack: Stack, twilio: TwilioStandIn) -> Iterator[SmsChannel]:
    with serving(stack, twilio) as channel:
        yield channel


def chats(stack: Stack) -> list[dict[str, Any]]:
    with stack.admin() as admin:
        return list(admin.get("/v1/chats", params={"all_users": True}).json())


def admin_cli(stack: Stack, *args: str) -> str:
    env = {"PATCHBAY_CORE__URL": stack.core_url, "PATCHBAY_API_KEY": stack.admin_key}
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_an_sms_is_answered_in_twiml(stack: Stack, upstream: MockUpstream, sms: SmsChannel) -> None:
    assert sms.text("hello") == [upstream.reply]
    assert upstream.requests[-1]["messages"][-1] == {"role": "user", "content": "hello"}
    assert sms.text("and again") == [upstream.reply]
    (chat,) = chats(stack)  # one phone number, one chat
    assert (chat["channel"], chat["thread"]) == ("sms", ANN)
    assert [m["content"] for m in upstream.requests[-1]["messages"]][-3:] == [
        "hello",
        upstream.reply,
        "and again",
    ]
    assert sms.twilio.messages == []  # quick answers go back in the webhook's reply


def test_signatures_cover_the_public_url(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn
) -> None:
    public = "https://sms.example.org"
    with serving(stack, twilio, public_url=public) as sms:
        params = {"From": ANN, "To": OUR_NUMBER, "Body": "hi", "MessageSid": "SM1"}
        url = f"{sms.url}/sms/twilio"
        assert signed_post(url, params).status_code == 403  # signed for the local URL
        root = parse(signed_post(url, params, signed_url=f"{public}/sms/twilio"))
        assert [m.text for m in root.findall("Message")] == [upstream.reply]


def test_long_answers_are_split(upstream: MockUpstream, sms: SmsChannel) -> None:
    upstream.reply = " ".join(f"word{i}" for i in range(700))  # about 5,000 characters
    bodies = sms.text("tell me everything")
    assert len(bodies) == 4 and all(len(body) <= 1600 for body in bodies)
    assert " ".join(bodies) == upstream.reply
    replies = httpx.post(
        f"{sms.url}/sms/inbound",
        json={"from": "+15550003", "text": "again", "id": "g-1"},
        headers={"X-Webhook-Secret": WEBHOOK_KEY},
        timeout=30,
    ).json()["replies"]
    assert all(len(r) <= 153 for r in replies) and " ".join(replies) == upstream.reply


def test_a_slow_answer_is_sent_later(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn
) -> None:
    upstream.mode, upstream.delay_s = "slow", 2.5
    with serving(stack, twilio, time_limit_s=1, from_number="+15550199") as sms:
        started = time.monotonic()
        assert sms.text("think hard") == []  # empty TwiML, at once
        assert time.monotonic() - started < 2
        deadline = time.monotonic() + 20
        while not twilio.messages and time.monotonic() < deadline:
            time.sleep(0.05)
    assert twilio.messages == [{"To": ANN, "From": "+15550199", "Body": upstream.reply}]


def test_a_wrong_signature_is_refused_and_nothing_stored(
    stack: Stack, upstream: MockUpstream, sms: SmsChannel
) -> None:
    url = f"{sms.url}/sms/twilio"
    params = {"From": ANN, "To": OUR_NUMBER, "Body": "hello", "MessageSid": "SM1"}
    forged = RequestValidator("not-the-token").compute_signature(url, params)
    assert httpx.post(url, data=params, headers={"X-Twilio-Signature": forged}).status_code == 403
    assert httpx.post(url, data=params).status_code == 403
    tampered = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    changed = {**params, "Body": "something else"}
    response = httpx.post(url, data=changed, headers={"X-Twilio-Signature": tampered})
    assert response.status_code == 403
    assert chats(stack) == [] and upstream.requests == []
    assert ANN not in admin_cli(stack, "identities", "list")


def test_a_repeated_delivery_gets_one_answer(upstream: MockUpstream, sms: SmsChannel) -> None:
    assert sms.text("hello", MessageSid="SMrepeat") == [upstream.reply]
    assert sms.text("hello", MessageSid="SMrepeat") == []
    assert len(upstream.requests) == 1


def test_pairing_then_answers(stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn) -> None:
    with serving(stack, twilio, policy="pairing") as sms:
        (first,) = sms.text("hello")
        code = re.search(r"code is ([A-Z0-9]{8})", first)
        assert code, first
        assert upstream.requests == [] and chats(stack) == []
        admin_cli(stack, "pairing", "approve", "sms", code.group(1))
        assert sms.text("hello") == [upstream.reply]
        assert ANN in admin_cli(stack, "identities", "list")


def test_an_allowlist_refuses_strangers_silently(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn
) -> None:
    with serving(stack, twilio, policy="allowlist") as sms:
        assert sms.text("hello") == []
        assert upstream.requests == [] and chats(stack) == []


def test_the_json_webhook(stack: Stack, upstream: MockUpstream, sms: SmsChannel) -> None:
    url = f"{sms.url}/sms/inbound"
    body = {"from": "+15550004", "text": "hello", "id": "gw-1"}
    assert httpx.post(url, json=body).status_code == 401
    wrong = httpx.post(url, json=body, headers={"X-Webhook-Secret": "guess"})
    assert wrong.status_code == 401 and upstream.requests == []
    key = {"X-Webhook-Secret": WEBHOOK_KEY}
    assert httpx.post(url, json=body, headers=key, timeout=30).json() == {
        "replies": [upstream.reply]
    }
    assert httpx.post(url, json=body, headers=key, timeout=30).json() == {"replies": []}
    assert len(upstream.requests) == 1
    assert httpx.post(url, json={"text": "no sender"}, headers=key).status_code == 422


def test_a_flooding_sender_is_slowed(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn
) -> None:
    with serving(stack, twilio, per_minute=3) as sms:
        for _ in range(3):
            assert sms.text("hi") == [upstream.reply]
        (warning,) = sms.text("hi")
        assert "faster than I can answer" in warning
        assert sms.text("hi") == []  # told once; then quiet
        assert sms.text("hi", sender="+15550005") == [upstream.reply]  # others are not slowed
    assert len(upstream.requests) == 4


@pytest.fixture
def helper(stack: Stack) -> Iterator[HandHelper]:
    with running_helper() as hand:
        key = {HELPER_KEY_HEADER: helper_key(stack.settings.installation_secret())}
        httpx.post(f"{stack.core_url}/v1/helpers", json=hand.manifest(), headers=key)
        yield hand


def test_media_reaches_the_model_as_text(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn, helper: HandHelper
) -> None:
    twilio.media["ME1"] = (NOTE, "text/plain")
    with serving(stack, twilio) as sms:
        media = {
            "NumMedia": "1",
            "MediaUrl0": f"{twilio.url}/media/ME1",
            "MediaContentType0": "text/plain",
        }
        assert sms.text("What does it say?", **media) == [upstream.reply]
        prompt = upstream.requests[-1]["messages"][-1]["content"]
        assert prompt.startswith("What does it say?") and NOTE.decode() in prompt


@pytest.mark.parametrize(
    ("media_url", "expected"),
    [
        ("{twilio}/media/BIG", "over the limit"),
        ("http://127.0.0.1:9/elsewhere", "https URL"),
        ("{twilio}/media/PICTURE", "no helper"),
    ],
)
def test_unreadable_media_is_refused_politely(
    stack: Stack,
    upstream: MockUpstream,
    twilio: TwilioStandIn,
    helper: HandHelper,
    media_url: str,
    expected: str,
) -> None:
    twilio.media["BIG"] = (b"x" * 2_000, "text/plain")
    twilio.media["PICTURE"] = (b"\x89PNG not really", "image/png")
    with serving(stack, twilio, max_media_bytes=1_000) as sms:
        media = {"NumMedia": "1", "MediaUrl0": media_url.format(twilio=twilio.url)}
        (reply,) = sms.text("look", **media)
        assert reply.startswith("Sorry") and expected in reply, reply
    assert upstream.requests == [] and chats(stack) == []
