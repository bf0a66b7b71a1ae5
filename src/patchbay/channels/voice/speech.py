"""TwiML for calls: answers made fit to be spoken, and what to do next (listen again, or say
goodbye)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field
from twilio.twiml.voice_response import VoiceResponse

from patchbay.channels.base import ChannelSettings, chunks
from patchbay.channels.sms.segments import xml_safe
from patchbay.schemas.senders import SenderResolved

CODE_BLOCK = re.compile(r"```.*?(```|$)", re.DOTALL)
LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
MARKUP = re.compile(r"[*_`#>|]+|^\s*[-+]\s+", re.MULTILINE)


class SpeechSettings(ChannelSettings):
    """How the voice channel speaks and listens."""

    greeting: str = "Hello! What would you like to ask?"
    # `speech`: Twilio recognises what callers say (<Gather>); `record`: calls are recorded
    # (<Record>) and the core's speech helper transcribes them.
    listen: Literal["speech", "record"] = "speech"
    language: str = "en-US"
    voice: str | None = None  # a Twilio <Say> voice, such as "Polly.Joanna"; default: Twilio's
    say_length: int = Field(default=500, gt=0, le=4096)  # characters per <Say> (Twilio: 4,096)
    max_spoken: int = Field(default=3000, gt=0)  # longer answers are cut
    max_record_s: int = Field(default=60, gt=0)


def speakable(text: str) -> str:
    """Markdown read aloud badly: code, link targets and markup characters left out."""
    text = CODE_BLOCK.sub(" (some code, which is better read than heard) ", text)
    text = LINK.sub(r"\1", text)
    return re.sub(r"\s+", " ", MARKUP.sub(" ", xml_safe(text))).strip()


def say(response: VoiceResponse, text: str, settings: SpeechSettings) -> None:
    """Speak `text`, in pieces Twilio reads well, cut at `max_spoken` characters."""
    for piece in chunks(speakable(text)[: settings.max_spoken], settings.say_length):
        response.say(piece, voice=settings.voice, language=settings.language)


def listen(
    response: VoiceResponse, settings: SpeechSettings, *, prompt: str, base_url: str = ""
) -> VoiceResponse:
    """Ask the caller (`prompt`) and take what they say next; silence ends the call."""
    if settings.listen == "speech":
        gather = response.gather(
            input="speech",
            action=f"{base_url}/voice/twilio/speech",
            method="POST",
            speech_timeout="auto",
            language=settings.language,
        )
        gather.say(prompt, voice=settings.voice, language=settings.language)
    else:
        say(response, prompt, settings)
        response.record(
            action=f"{base_url}/voice/twilio/recording",
            method="POST",
            max_length=settings.max_record_s,
            timeout=5,
            play_beep=True,
        )
    return goodbye(response, settings, "Goodbye!")


def goodbye(response: VoiceResponse, settings: SpeechSettings, text: str) -> VoiceResponse:
    say(response, text, settings)
    response.hangup()
    return response


def turned_away(who: SenderResolved, settings: SpeechSettings) -> VoiceResponse:
    """What a caller who may not talk (yet) hears, with a pairing code spelled out twice."""
    if who.status == "pairing" and who.code:
        spelled = ", ".join(who.code)
        text = (
            "Hello! Before we can talk, an admin must let you in. "
            f"Your code is {spelled}. Once more: {spelled}. It expires in an hour."
        )
    else:
        text = "Sorry, this number may not use this service."
    return goodbye(VoiceResponse(), settings, text)
