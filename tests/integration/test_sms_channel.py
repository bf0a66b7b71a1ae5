"""The SMS channel end to end: Twilio-format webhooks signed with the `twilio` library, a local
stand-in for Twilio's REST API that records what the channel sends, and the JSON webhook."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from twilio.request_validator import RequestValidator

from patchbay.schemas.helpers import HELPER_KEY_HEADER
from patchbay.tokens import helper_key
from tests.conftest import free_port
from tests.support.hand_helper import HandHelper, running_helper
from tests.support.stack import Stack
from tests.support.twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    WEBHOOK_KEY,
    TwilioStandIn,
    parse,
    running_twilio,
    serving,
    signed_post,
)
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration

OUR_NUMBER = "+15550100"
ANN = "+15550001"
NOTE = b"The secret word is pineapple."


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
def serving_sms(stack: Stack, twilio: TwilioStandIn, **overrides: object) -> Iterator[SmsChannel]:
    with serving(stack, twilio, "sms", **{"segments_per_s": 50, **overrides}) as url:
        yield SmsChannel(url, twilio)


@pytest.fixture
def sms(stack: Stack, twilio: TwilioStandIn) -> Iterator[SmsChannel]:
    with serving_sms(stack, twilio) as channel:
        yield channel


def test_an_sms_is_answered_in_twiml(stack: Stack, upstream: MockUpstream, sms: SmsChannel) -> None:
    assert sms.text("hello") == [upstream.reply]
    assert upstream.requests[-1]["messages"][-1] == {"role": "user", "content": "hello"}
    assert sms.text("and again") == [upstream.reply]
    (chat,) = stack.chats()  # one phone number, one chat
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
    with serving_sms(stack, twilio, public_url=public) as sms:
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
    upstream.mode, upstream.delay_s = "slow", 4.0
    with serving_sms(stack, twilio, time_limit_s=1, from_number="+15550199") as sms:
        started = time.monotonic()
        assert sms.text("think hard") == []  # empty TwiML, once the time limit is up
        assert time.monotonic() - started < upstream.delay_s - 1
        deadline = time.monotonic() + 20
        while not twilio.messages and time.monotonic() < deadline:
            time.sleep(0.05)
    assert twilio.messages == [{"To": ANN, "From": "+15550199", "Body": upstream.reply}]


def test_a_later_answer_survives_a_restart_and_goes_once(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn
) -> None:
    upstream.mode, upstream.delay_s = "slow", 2.5
    # Restarted as configured, on its port: the same holder, which takes back its answers at once.
    settings = {"time_limit_s": 0.5, "from_number": "+15550199", "port": free_port()}
    with serving_sms(stack, twilio, **settings) as sms:
        assert sms.text("think hard") == []
    time.sleep(2.5)  # the answer came while the channel was down
    assert twilio.messages == []
    with serving_sms(stack, twilio, **settings):
        deadline = time.monotonic() + 20
        while not twilio.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
    with serving_sms(stack, twilio, **settings):  # sent: not owed any more
        time.sleep(0.5)
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
    assert stack.chats() == [] and upstream.requests == []
    assert ANN not in stack.cli("identities", "list")


def test_a_repeated_delivery_gets_one_answer(upstream: MockUpstream, sms: SmsChannel) -> None:
    assert sms.text("hello", MessageSid="SMrepeat") == [upstream.reply]
    assert sms.text("hello", MessageSid="SMrepeat") == []
    assert len(upstream.requests) == 1


def test_a_delivery_repeated_after_a_restart_gets_no_second_answer(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn
) -> None:
    with serving_sms(stack, twilio) as sms:
        assert sms.text("hello", MessageSid="SMagain") == [upstream.reply]
    with serving_sms(stack, twilio) as sms:  # a new channel process remembers no ids
        assert sms.text("hello", MessageSid="SMagain") == []
        assert sms.text("hello", MessageSid="SMnew") == [upstream.reply]
    assert len(upstream.requests) == 2 and twilio.messages == []
    (chat,) = stack.chats()
    with stack.admin() as admin:
        stored = admin.get(f"/v1/chats/{chat['id']}/messages").json()
    assert [m["role"] for m in stored] == ["user", "assistant"] * 2


def test_pairing_then_answers(stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn) -> None:
    with serving_sms(stack, twilio, policy="pairing") as sms:
        (first,) = sms.text("hello")
        code = re.search(r"code is ([A-Z0-9]{8})", first)
        assert code, first
        assert upstream.requests == [] and stack.chats() == []
        stack.cli("pairing", "approve", "sms", code.group(1))
        assert sms.text("hello") == [upstream.reply]
        assert ANN in stack.cli("identities", "list")


def test_an_allowlist_refuses_strangers_silently(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn
) -> None:
    with serving_sms(stack, twilio, policy="allowlist") as sms:
        assert sms.text("hello") == []
        assert upstream.requests == [] and stack.chats() == []


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
    with serving_sms(stack, twilio, per_minute=3) as sms:
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
    with serving_sms(stack, twilio) as sms:
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
    with serving_sms(stack, twilio, max_media_bytes=1_000) as sms:
        media = {"NumMedia": "1", "MediaUrl0": media_url.format(twilio=twilio.url)}
        (reply,) = sms.text("look", **media)
        assert reply.startswith("Sorry") and expected in reply, reply
    assert upstream.requests == [] and stack.chats() == []


def test_a_post_with_a_file_is_refused_unsigned_or_not(
    upstream: MockUpstream, sms: SmsChannel
) -> None:
    """Twilio posts no files; such a form made the signature check fail with a 500."""
    response = httpx.post(
        f"{sms.url}/sms/twilio",
        data={"From": ANN, "Body": "hi"},
        files={"Body2": ("x.txt", b"hello", "text/plain")},
        headers={"X-Twilio-Signature": "forged"},
    )
    assert response.status_code == 403
    assert upstream.requests == []


def test_control_characters_of_an_answer_are_left_out_of_the_twiml(
    upstream: MockUpstream, sms: SmsChannel
) -> None:
    """XML cannot hold them: Twilio would get a document it cannot read, and the phone nothing."""
    upstream.reply = "Step 1:\x08 done\x0c"
    assert sms.text("hi", MessageSid="SMctl") == ["Step 1: done"]


def test_the_same_gateway_id_from_two_senders_is_two_messages(
    upstream: MockUpstream, sms: SmsChannel
) -> None:
    url, key = f"{sms.url}/sms/inbound", {"X-Webhook-Secret": WEBHOOK_KEY}
    for sender in ("+15550011", "+15550022"):
        sent = {"from": sender, "text": "hi", "id": "1"}
        answered = httpx.post(url, json=sent, headers=key, timeout=30)
        assert answered.json() == {"replies": [upstream.reply]}
    assert len(upstream.requests) == 2


def test_a_body_past_the_limit_is_refused_before_it_is_read_whole(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn
) -> None:
    """Anyone may post to a webhook: a form's fields are read into memory before its signature
    can be checked, so a body is capped first, declared or streamed (chunked)."""
    field = b"Body=" + b"x" * 300_000 + b"&"
    with serving_sms(stack, twilio, max_body_bytes=1_000_000) as sms:
        url = f"{sms.url}/sms/twilio"
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        declared = httpx.post(url, content=field * 5, headers=form)
        streamed = httpx.post(url, content=iter([field] * 5), headers=form)
        for refused in (declared, streamed):
            assert refused.status_code == 413, refused.text
            assert refused.json()["error"]["code"] == "payload_too_large"
        assert "Transfer-Encoding" not in declared.request.headers
        assert streamed.request.headers["Transfer-Encoding"] == "chunked"
        assert sms.text("hi") == ["Hello from the mock upstream."]  # and it serves on
    assert len(upstream.requests) == 1
