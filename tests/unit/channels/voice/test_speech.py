"""The voice channel's TwiML: answers fit for speaking, listening, turning callers away."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from pydantic import ValidationError
from twilio.twiml.voice_response import VoiceResponse

from patchbay.channels.voice.channel import VoiceSettings
from patchbay.channels.voice.speech import SpeechSettings, listen, speakable, turned_away
from patchbay.channels.voice.webhooks import withheld
from patchbay.schemas.senders import SenderResolved


@pytest.mark.parametrize(
    ("markdown", "spoken"),
    [
        ("**Bold** and _lean_", "Bold and lean"),
        ("# Title\n- one\n- two", "Title one two"),
        ("See [the docs](https://x.org/a).", "See the docs."),
        (
            "Run:\n```sh\nrm -rf /\n```\nDone.",
            "Run: (some code, which is better read than heard) Done.",
        ),
        ("Use `pip`", "Use pip"),
    ],
)
def test_speakable(markdown: str, spoken: str) -> None:
    assert speakable(markdown) == spoken


def tags(response: VoiceResponse) -> list[str]:
    return [element.tag for element in ET.fromstring(str(response))]  # noqa: S314 - ours


def test_listening_by_speech_or_by_recording() -> None:
    speech = listen(VoiceResponse(), SpeechSettings(), prompt="Yes?", base_url="https://v.org")
    assert tags(speech) == ["Gather", "Say", "Hangup"]
    assert 'action="https://v.org/voice/twilio/speech"' in str(speech)
    record = listen(VoiceResponse(), SpeechSettings(listen="record"), prompt="Yes?")
    assert tags(record) == ["Say", "Record", "Say", "Hangup"]
    assert 'action="/voice/twilio/recording"' in str(record)


def test_turned_away_callers_hear_why_and_the_call_ends() -> None:
    pairing = turned_away(SenderResolved(status="pairing", code="AB12"), SpeechSettings())
    assert tags(pairing) == ["Say", "Hangup"] and "A, B, 1, 2. Once more: A, B, 1, 2" in str(
        pairing
    )
    refused = turned_away(SenderResolved(status="refused"), SpeechSettings())
    assert "may not use" in str(refused)


@pytest.mark.parametrize(
    "setting",
    [
        {"time_limit_s": 15},  # Twilio has given up on the webhook by then
        {"time_limit_s": 0},
        {"say_length": 5000},  # past what one <Say> may hold
        {"max_spoken": 0},
        {"lost_after_s": 0},  # every redirect would give up at once
    ],
)
def test_settings_twilio_cannot_work_with_are_refused(setting: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        VoiceSettings.model_validate(setting)


@pytest.mark.parametrize(
    ("caller", "hidden"),
    [
        ("anonymous", True),
        ("Restricted", True),
        ("+266696687", True),  # ANONYMOUS on a keypad
        ("+15550011", False),
        ("client:ann", False),  # a Twilio Client app
        ("sip:ann@example.org", False),
    ],
)
def test_hidden_numbers_are_told_from_callers_without_digits(caller: str, hidden: bool) -> None:
    assert withheld(caller) is hidden
