"""The voice channel end to end: signed Twilio voice webhooks, a call kept as one chat, and
recordings (from the Twilio stand-in, or uploaded) transcribed by a speech helper.

The speech helper here is a stand-in with a to-text capability for `audio/*` that answers a
fixed transcript, so the test needs no speech model; the recording is a real (silent) WAV file.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
import wave
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from patchbay.channels.runner import create_app
from patchbay.channels.voice.webhooks import IDEMPOTENCY_HEADER as IDEMPOTENCY
from patchbay.plugins.manager import build_plugin_manager, channel_classes
from patchbay.schemas.helpers import HELPER_KEY_HEADER
from patchbay.tokens import helper_key
from tests.conftest import free_port
from tests.support.servers import serve_in_thread
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

CALLER = "+15550011"
TRANSCRIPT = "What is the capital of France?"


def silent_wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\x00\x00" * 800)
    return buffer.getvalue()


@dataclass
class SpeechStandIn:
    """A speech helper: turns any audio into the same transcript, noting what it was given."""

    heard: list[tuple[str, int]] = field(default_factory=list)  # (media type, bytes)
    url: str = ""

    def manifest(self) -> dict[str, object]:
        capability = {
            "name": "transcribe",
            "description": "What is said in a recording.",
            "kind": "to-text",
            "media_types": ["audio/*"],
        }
        return {
            "name": "speech-stand-in",
            "version": "1",
            "description": "transcribes audio",
            "base_url": self.url,
            "capabilities": [capability],
        }

    def app(self) -> Starlette:
        async def transcribe(request: Request) -> Response:
            body = await request.body()
            self.heard.append((request.headers["content-type"], len(body)))
            return JSONResponse({"text": TRANSCRIPT, "format": "plain", "duration_s": 0.1})

        async def health(_request: Request) -> Response:
            return JSONResponse({"status": "ok"})

        return Starlette(
            routes=[
                Route("/capabilities/transcribe", transcribe, methods=["POST"]),
                Route("/health", health),
            ]
        )


@pytest.fixture
def speech(stack: Stack) -> Iterator[SpeechStandIn]:
    stand_in = SpeechStandIn()
    with serve_in_thread(stand_in.app(), free_port()) as url:
        stand_in.url = url
        key = {HELPER_KEY_HEADER: helper_key(stack.settings.installation_secret())}
        httpx.post(f"{stack.core_url}/v1/helpers", json=stand_in.manifest(), headers=key)
        yield stand_in


@pytest.fixture
def twilio() -> Iterator[TwilioStandIn]:
    with running_twilio() as stand_in:
        yield stand_in


@dataclass
class Call:
    url: str
    sid: str
    caller: str = CALLER

    def post(self, path: str, **fields: str) -> ET.Element:
        params = {"CallSid": self.sid, "From": self.caller, "To": "+15550100", **fields}
        params["AccountSid"] = ACCOUNT_SID
        return parse(signed_post(f"{self.url}{path}", params))

    def at(self, url: str) -> Call:
        """The same call, its next webhook reaching the process at `url`."""
        return Call(url, self.sid, self.caller)


def follow(root: ET.Element, *calls: Call, tries: int = 30) -> ET.Element:
    """Follow the answer's redirects as Twilio does, each to the next of `calls` in turn (the
    processes a load balancer sends them to), until something is said."""
    for index in range(tries):
        if root.find("Redirect") is None:
            return root
        redirect = root.find("Redirect")
        assert redirect is not None and root[0].tag == "Pause"
        root = calls[index % len(calls)].post(redirect.text or "")
    raise AssertionError("the answer never came")


@pytest.fixture
def voice(stack: Stack, twilio: TwilioStandIn) -> Iterator[str]:
    with serving(stack, twilio, "voice") as url:
        yield url


def spoken(root: ET.Element) -> str:
    return " ".join(say.text or "" for say in root.iter("Say"))


def test_a_call_gathers_speech_and_speaks_answers(
    stack: Stack, upstream: MockUpstream, voice: str
) -> None:
    call = Call(voice, "CA0001")
    greeting = call.post("/voice/twilio")
    gather = greeting.find("Gather")
    assert gather is not None and gather.get("input") == "speech"
    assert gather.get("action") == "/voice/twilio/speech"
    assert "What would you like to ask" in spoken(gather)
    answer = call.post("/voice/twilio/speech", SpeechResult="Where is Paris?", Confidence="0.9")
    assert [element.tag for element in answer] == ["Say", "Gather", "Say", "Hangup"]
    assert answer[0].text == upstream.reply
    assert upstream.requests[-1]["messages"][-1]["content"] == "Where is Paris?"
    # the same call continues the same chat; another call is another chat
    call.post("/voice/twilio/speech", SpeechResult="And Rome?")
    contents = [m["content"] for m in upstream.requests[-1]["messages"]]
    assert contents[-3:] == ["Where is Paris?", upstream.reply, "And Rome?"]
    Call(voice, "CA0002").post("/voice/twilio/speech", SpeechResult="Hello?")
    assert sorted(c["thread"] for c in stack.chats()) == ["CA0001", "CA0002"]
    assert {c["channel"] for c in stack.chats()} == {"voice"}


def test_silence_is_asked_again(upstream: MockUpstream, voice: str) -> None:
    root = Call(voice, "CA0003").post("/voice/twilio/speech", SpeechResult="")
    assert "did not catch" in spoken(root) and upstream.requests == []


def test_answers_are_spoken_in_pieces_without_markup(upstream: MockUpstream, voice: str) -> None:
    upstream.reply = "**Paris** is the capital. " + "It is lovely. " * 80
    root = Call(voice, "CA0004").post("/voice/twilio/speech", SpeechResult="Tell me.")
    says = [say.text or "" for say in root.findall("Say")][:-1]  # the last one says goodbye
    assert len(says) > 1 and all(len(s) <= 500 for s in says)
    assert says[0].startswith("Paris is the capital.") and "*" not in "".join(says)


def test_a_caller_waiting_for_pairing_hears_the_code(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn
) -> None:
    with serving(stack, twilio, "voice", policy="pairing") as url:
        root = Call(url, "CA0005").post("/voice/twilio")
        assert [element.tag for element in root] == ["Say", "Hangup"]
        code = re.search(r"code is ((?:[A-Z0-9], ){7}[A-Z0-9])\.", spoken(root))
        assert code, spoken(root)
        uploaded = httpx.post(
            f"{url}/voice/upload",
            files={"file": ("memo.wav", silent_wav(), "audio/wav")},
            data={"from": CALLER},
            headers={"X-Webhook-Secret": WEBHOOK_KEY},
        ).json()
        assert uploaded["status"] == "pairing"
        assert code.group(1).replace(", ", "") in uploaded["text"]  # the same code
        stack.cli("pairing", "approve", "voice", code.group(1).replace(", ", ""))
        assert Call(url, "CA0006").post("/voice/twilio").find("Gather") is not None
    assert upstream.requests == []


@pytest.mark.parametrize("hidden", ["anonymous", "Restricted", "+266696687", "+8656696"])
def test_a_caller_who_hides_their_number_is_turned_away(
    stack: Stack, upstream: MockUpstream, voice: str, hidden: str
) -> None:
    """Every such caller would be the same person to the channel, and see the others' chats."""
    call = Call(voice, "CA0020", caller=hidden)
    for root in (call.post("/voice/twilio"), call.post("/voice/twilio/speech", SpeechResult="Hi")):
        assert [element.tag for element in root] == ["Say", "Hangup"]
        assert "hidden number" in spoken(root)
    assert upstream.requests == [] and stack.chats() == []
    with stack.admin() as admin:
        assert admin.get("/v1/identities").json() == []


def test_waiting_for_no_answer_asks_again(upstream: MockUpstream, voice: str) -> None:
    root = Call(voice, "CA0010").post("/voice/twilio/wait")
    assert "lost track" in spoken(root) and root.find("Gather") is not None


def test_a_wrong_signature_is_refused(stack: Stack, upstream: MockUpstream, voice: str) -> None:
    params = {"CallSid": "CA0007", "From": CALLER, "SpeechResult": "hello"}
    response = httpx.post(
        f"{voice}/voice/twilio/speech", data=params, headers={"X-Twilio-Signature": "forged"}
    )
    assert response.status_code == 403
    assert upstream.requests == [] and stack.chats() == []


def test_a_slow_answer_pauses_then_is_spoken(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn
) -> None:
    upstream.mode, upstream.delay_s = "slow", 2.0
    with serving(stack, twilio, "voice", time_limit_s=0.5) as url:
        call = Call(url, "CA0008")
        root = call.post("/voice/twilio/speech", SpeechResult="Think hard.")
        assert [element.tag for element in root] == ["Pause", "Redirect"]
        query = parse_qs(urlsplit(root[1].text or "").query)
        assert urlsplit(root[1].text or "").path == "/voice/twilio/wait"
        assert query["delivery"][0].startswith("CA0008 ") and query["job"]  # the job, once made
        assert follow(root, call)[0].text == upstream.reply
    assert len(upstream.requests) == 1


def test_a_recorded_call_is_transcribed_and_answered(
    stack: Stack,
    upstream: MockUpstream,
    twilio: TwilioStandIn,
    speech: SpeechStandIn,
) -> None:
    twilio.media["RE0001"] = (silent_wav(), "audio/x-wav")
    with serving(stack, twilio, "voice", listen="record") as url:
        call = Call(url, "CA0009")
        greeting = call.post("/voice/twilio")
        record = greeting.find("Record")
        assert record is not None and record.get("action") == "/voice/twilio/recording"
        answer = call.post(
            "/voice/twilio/recording",
            RecordingUrl=f"{twilio.url}/media/RE0001",
            RecordingDuration="1",
        )
        assert answer[0].text == upstream.reply
        assert answer.find("Record") is not None  # and it listens again
    assert speech.heard == [("audio/x-wav", len(silent_wav()))]
    assert TRANSCRIPT in upstream.requests[-1]["messages"][-1]["content"]
    (chat,) = stack.chats()
    assert chat["thread"] == "CA0009"


def test_an_uploaded_recording_is_answered(
    stack: Stack, upstream: MockUpstream, voice: str, speech: SpeechStandIn
) -> None:
    files = {"file": ("memo.wav", silent_wav(), "audio/wav")}
    url = f"{voice}/voice/upload"
    refused = httpx.post(url, files=files, data={"from": CALLER})
    assert refused.status_code == 401
    wrong = httpx.post(url, files=files, data={"from": CALLER}, headers={"X-Webhook-Secret": "x"})
    assert wrong.status_code == 401 and speech.heard == []
    response = httpx.post(
        url,
        files=files,
        data={"from": CALLER},
        headers={"X-Webhook-Secret": WEBHOOK_KEY},
        timeout=30,
    )
    assert response.json() == {"status": "known", "text": upstream.reply}, response.text
    assert TRANSCRIPT in upstream.requests[-1]["messages"][-1]["content"]
    assert speech.heard == [("audio/wav", len(silent_wav()))]


@contextmanager
def slow_recordings(delay_s: float) -> Iterator[str]:
    """Twilio's API answering a recording only after `delay_s` (as it does when busy)."""

    async def recording(_request: Request) -> Response:
        await asyncio.sleep(delay_s)
        return Response(silent_wav(), media_type="audio/x-wav")

    app = Starlette(routes=[Route("/Recordings/{sid}", recording)])
    with serve_in_thread(app, free_port()) as url:
        yield url


def test_a_slow_recording_fetch_counts_against_the_time_limit(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn, speech: SpeechStandIn
) -> None:
    """Twilio waits 15 s for the webhook's answer: fetching the recording is part of the turn,
    so a slow fetch gives a pause and a redirect, not an answer Twilio no longer waits for."""
    with (
        slow_recordings(3.0) as api,
        serving(stack, twilio, "voice", listen="record", time_limit_s=0.5, api_base_url=api) as url,
    ):
        call = Call(url, "CA0011")
        root = call.post("/voice/twilio/recording", RecordingUrl=f"{api}/Recordings/RE0002")
        assert [element.tag for element in root] == ["Pause", "Redirect"]
        assert follow(root, call)[0].text == upstream.reply
    assert len(speech.heard) == 1 and len(upstream.requests) == 1


def test_an_answer_redirected_before_its_turn_was_stored_is_spoken_by_another_process(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn, speech: SpeechStandIn
) -> None:
    """The time limit passed while the recording was still being fetched, so the core had no job
    yet; the redirect names the question, and the process it reaches (another one behind a load
    balancer, or this one restarted) finds its turn once it is stored."""
    with (
        slow_recordings(2.0) as api,
        serving(stack, twilio, "voice", listen="record", time_limit_s=0.5, api_base_url=api) as a,
        serving(stack, twilio, "voice", listen="record", time_limit_s=0.5, api_base_url=api) as b,
    ):
        call = Call(a, "CA0014")
        root = call.post(
            "/voice/twilio/recording",
            RecordingUrl=f"{api}/Recordings/RE0003",
            RecordingSid="RE0003",
        )
        redirect = root.find("Redirect")
        assert redirect is not None and "job=" not in (redirect.text or "")
        assert "delivery=CA0014+RE0003" in (redirect.text or "")
        assert follow(root, call.at(b))[0].text == upstream.reply
    assert len(speech.heard) == 1 and len(upstream.requests) == 1


def test_a_process_stopping_mid_fetch_hands_the_question_to_the_core_first(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn, speech: SpeechStandIn
) -> None:
    """A voice process restarted while a recording was still being fetched: it stores the turn
    before it stops (within the time limit), so the process the redirect reaches speaks it."""
    with slow_recordings(2.0) as api:
        settings = {"listen": "record", "time_limit_s": 1.5, "api_base_url": api}
        with serving(stack, twilio, "voice", **settings) as a:
            root = Call(a, "CA0018").post(
                "/voice/twilio/recording",
                RecordingUrl=f"{api}/Recordings/RE0004",
                RecordingSid="RE0004",
            )
            assert [element.tag for element in root] == ["Pause", "Redirect"]
        with serving(stack, twilio, "voice", **settings) as b:  # a, restarted
            assert follow(root, Call(b, "CA0018"))[0].text == upstream.reply
    assert len(speech.heard) == 1 and len(upstream.requests) == 1


def test_a_redirect_for_a_question_nobody_stored_gives_up_in_time(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn
) -> None:
    """The process that took the webhook stopped before it stored the turn: the redirect keeps
    looking for it a while (it may still come), `lost_after_s`, then the caller is asked again."""
    with serving(stack, twilio, "voice", time_limit_s=0.5, lost_after_s=60) as url:
        call = Call(url, "CA0015")
        now = int(time.time())
        waiting = call.post(f"/voice/twilio/wait?delivery=CA0015+gone&since={now - 30}")
        assert [element.tag for element in waiting] == ["Pause", "Redirect"]
        long_ago = now - 61  # within the default, five minutes
        lost = call.post(f"/voice/twilio/wait?delivery=CA0015+lost&since={long_ago}")
        assert "lost track" in spoken(lost) and lost.find("Gather") is not None
    assert upstream.requests == [] and stack.chats() == []


def test_a_slow_answer_is_spoken_by_another_voice_process(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn
) -> None:
    """Channel processes are stateless behind a load balancer (or one restarts mid-call): the
    process Twilio's redirect reaches speaks the answer the other one started."""
    upstream.mode, upstream.delay_s = "slow", 2.0
    with (
        serving(stack, twilio, "voice", time_limit_s=0.5) as first,
        serving(stack, twilio, "voice", time_limit_s=0.5) as second,
    ):
        root = Call(first, "CA0012").post("/voice/twilio/speech", SpeechResult="Think hard.")
        assert [element.tag for element in root] == ["Pause", "Redirect"]
        assert follow(root, Call(second, "CA0012"))[0].text == upstream.reply
    assert len(upstream.requests) == 1


def test_a_process_that_followed_an_answer_speaks_the_next_one_not_it(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn
) -> None:
    """The first answer's redirects went to both processes and the first one spoke it; when the
    next question's redirect reaches the second, it speaks that question's answer, not the one
    it had followed."""
    upstream.mode, upstream.delay_s = "slow", 1.5
    with (
        serving(stack, twilio, "voice", time_limit_s=0.5) as first,
        serving(stack, twilio, "voice", time_limit_s=0.5) as second,
    ):
        a, b = Call(first, "CA0016"), Call(second, "CA0016")
        root = a.post("/voice/twilio/speech", SpeechResult="First?")
        assert follow(root, b, a, a, a, a)[0].text == upstream.reply  # b waits, a speaks
        upstream.reply = "The second answer."
        root = a.post("/voice/twilio/speech", SpeechResult="Second?")
        assert follow(root, b)[0].text == "The second answer."


def test_an_upload_while_the_core_is_away_is_a_503(stack: Stack, twilio: TwilioStandIn) -> None:
    """A voicemail box that uploads while the core restarts hears to try again, not a 500."""
    port = free_port()
    own = {"port": port, "policy": "open", "webhook_secret": WEBHOOK_KEY}
    away = stack.settings.core.model_copy(update={"url": f"http://127.0.0.1:{free_port()}"})
    settings = stack.settings.model_copy(update={"core": away, "channels": {"voice": own}})
    found = channel_classes(build_plugin_manager(entry_points=False))["voice"]
    with serve_in_thread(create_app(settings, found), port) as url:
        response = httpx.post(
            f"{url}/voice/upload",
            files={"file": ("memo.wav", silent_wav(), "audio/wav")},
            data={"from": CALLER},
            headers={"X-Webhook-Secret": WEBHOOK_KEY},
            timeout=30,
        )
    assert response.status_code == 503, response.text
    assert "try again" in response.json()["detail"]


def test_a_retried_webhook_asks_once(stack: Stack, upstream: MockUpstream, voice: str) -> None:
    """Twilio retries a webhook (connection overrides `#rp=all`) with the same
    I-Twilio-Idempotency-Token: the question is asked once, and both requests get its answer."""
    upstream.mode, upstream.delay_s = "slow", 1.5
    params = {"CallSid": "CA0013", "From": CALLER, "To": "+15550100", "AccountSid": ACCOUNT_SID}
    params["SpeechResult"] = "Where is Paris?"
    url = f"{voice}/voice/twilio/speech"
    headers = {
        "X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(url, params),
        "I-Twilio-Idempotency-Token": "e2c6d0f4-retried",
    }

    def post() -> ET.Element:
        return parse(httpx.post(url, data=params, headers=headers, timeout=30))

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post)
        time.sleep(0.5)  # the retry comes while the first request still waits for the answer
        retried = pool.submit(post)
        answers = [first.result(), retried.result()]
    (chat,) = stack.chats()
    with stack.admin() as admin:
        messages = admin.get(f"/v1/chats/{chat['id']}/messages").json()
    assert [m["role"] for m in messages] == ["user", "assistant"], messages
    assert [spoken(answer).split(" Anything")[0] for answer in answers] == [upstream.reply] * 2


def test_a_webhook_retried_after_a_restart_asks_once(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn
) -> None:
    """Twilio retries a webhook whose first try reached a process that then stopped (or retries
    it to another process behind a load balancer): the retry follows the turn the first try
    stored rather than asking again."""
    upstream.mode, upstream.delay_s = "slow", 1.0
    params = {"CallSid": "CA0017", "From": CALLER, "To": "+15550100", "AccountSid": ACCOUNT_SID}
    params["SpeechResult"] = "Where is Rome?"
    with (
        serving(stack, twilio, "voice", time_limit_s=0.5) as first,
        serving(stack, twilio, "voice", time_limit_s=0.5) as second,
    ):
        roots = []
        for url in (first, second):
            webhook = f"{url}/voice/twilio/speech"
            signature = RequestValidator(AUTH_TOKEN).compute_signature(webhook, params)
            headers = {"X-Twilio-Signature": signature, IDEMPOTENCY: "7f1d-retried"}
            roots.append(parse(httpx.post(webhook, data=params, headers=headers, timeout=30)))
        answer = follow(roots[1], Call(second, "CA0017"))
    assert answer[0].text == upstream.reply
    (chat,) = stack.chats()
    with stack.admin() as admin:
        messages = admin.get(f"/v1/chats/{chat['id']}/messages").json()
    assert [m["role"] for m in messages] == ["user", "assistant"], messages
    assert len(upstream.requests) == 1


def test_a_caller_who_hangs_up_stops_the_answer(
    stack: Stack, upstream: MockUpstream, twilio: TwilioStandIn
) -> None:
    """Twilio's status callback says the call is over: the answer nobody will hear any more is
    cancelled in the core, and the webhook still waiting for it hangs up."""
    upstream.mode, upstream.delay_s = "slow", 8.0
    with serving(stack, twilio, "voice", time_limit_s=10) as url, ThreadPoolExecutor(1) as pool:
        call = Call(url, "CA0021")
        asking = pool.submit(call.post, "/voice/twilio/speech", SpeechResult="Think very hard.")
        answer = asked_answer(stack)
        status = f"{url}/voice/twilio/status"
        params = {"CallSid": "CA0021", "From": CALLER, "AccountSid": ACCOUNT_SID}
        forged = httpx.post(status, data=params, headers={"X-Twilio-Signature": "forged"})
        assert forged.status_code == 403
        assert list(call.post("/voice/twilio/status", CallStatus="in-progress")) == []
        assert answer()["status"] in ("queued", "streaming")  # a call going on: still coming
        assert list(call.post("/voice/twilio/status", CallStatus="completed")) == []
        assert answer()["status"] == "cancelled"
        assert [element.tag for element in asking.result()] == ["Hangup"]
        assert list(call.post("/voice/twilio/status", CallStatus="completed")) == []  # again


def asked_answer(stack: Stack, timeout_s: float = 20) -> Callable[[], dict[str, object]]:
    """Once the only chat's question is stored: a look at its answer."""
    deadline = time.monotonic() + timeout_s
    while not stack.chats():
        assert time.monotonic() < deadline, "the question was never stored"
        time.sleep(0.05)
    (chat,) = stack.chats()

    def answer() -> dict[str, object]:
        with stack.admin() as admin:
            return dict(admin.get(f"/v1/chats/{chat['id']}/messages").json()[-1])

    return answer


def test_an_upload_sent_again_is_asked_once(
    stack: Stack, upstream: MockUpstream, voice: str, speech: SpeechStandIn
) -> None:
    """A voicemail box retries an upload (its first answer was lost on the way, or slow) with the
    same `id`: the recording is one turn, and both uploads get its answer."""
    upstream.mode, upstream.delay_s = "slow", 1.0

    def upload() -> httpx.Response:
        return httpx.post(
            f"{voice}/voice/upload",
            files={"file": ("memo.wav", silent_wav(), "audio/wav")},
            data={"from": CALLER, "id": "vm-0001"},
            headers={"X-Webhook-Secret": WEBHOOK_KEY},
            timeout=30,
        )

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(upload)
        time.sleep(0.5)  # the retry may come while the first still waits, or after: one turn
        retried = pool.submit(upload)
        answers = [first.result().json(), retried.result().json()]
    assert answers == [{"status": "known", "text": upstream.reply}] * 2
    (chat,) = stack.chats()
    with stack.admin() as admin:
        messages = admin.get(f"/v1/chats/{chat['id']}/messages").json()
    assert [m["role"] for m in messages] == ["user", "assistant"], messages
    assert len(speech.heard) == 1 and len(upstream.requests) == 1
    assert upload().json() == answers[0]  # and once it was answered
    assert len(upstream.requests) == 1
