"""The voice channel: Twilio's voice webhooks (`/voice/twilio…`, answered in TwiML) and an
upload of recorded audio (`POST /voice/upload`). A call is one chat (its thread is the CallSid);
recordings go to the core as attachments, which its speech helper turns into text."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    UploadFile,
)
from pydantic import BaseModel
from twilio.twiml.voice_response import VoiceResponse

from patchbay.channels.base import Channel, pairing_message
from patchbay.channels.sms.media import fetch_media
from patchbay.channels.sms.replies import answer_text, outcome_text, sorry
from patchbay.channels.sms.twilio_format import (
    WEBHOOK_KEY_HEADER,
    TwilioSettings,
    check_secret,
    signed_form,
    twiml,
)
from patchbay.channels.voice.calls import CallTurns
from patchbay.channels.voice.speech import SpeechSettings, goodbye, listen, say, turned_away
from patchbay.client import ActAs, CoreClient
from patchbay.errors import CoreUnavailable, PatchbayError, PayloadTooLarge
from patchbay.plugins import hookimpl
from patchbay.plugins.hookspecs import RegisterChannel
from patchbay.schemas.jobs import JobEvent
from patchbay.schemas.turns import AttachmentIn

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"  # the same on Twilio's retries of a webhook
_HIDDEN = ("anonymous", "restricted", "unknown", "blocked", "unavailable", "private")
_KEYPAD = str.maketrans("abcdefghijklmnopqrstuvwxyz", "22233344455566677778889999")
WITHHELD = frozenset([*_HIDDEN, *(f"+{word.translate(_KEYPAD)}" for word in _HIDDEN)])
WITHHELD_SORRY = "Sorry, I cannot take calls from a hidden number. Please call again showing yours."


class VoiceSettings(TwilioSettings, SpeechSettings):
    port: int | None = 8091


class UploadAnswer(BaseModel):
    """`known`: `text` is the answer; `pairing` or `refused`: `text` says why there is none."""

    status: Literal["known", "pairing", "refused"]
    text: str


class VoiceChannel(Channel[VoiceSettings]):
    name = "voice"
    settings_model = VoiceSettings

    def __init__(self, settings: VoiceSettings, core: CoreClient) -> None:
        super().__init__(settings, core)
        self._calls = CallTurns()
        self._base = (settings.public_url or "").rstrip("/")

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/voice", tags=["voice"])

        @router.post("/twilio")
        async def call(request: Request) -> Response:
            """A new call: greet a known caller and listen; turn others away."""
            return twiml(await self._greet(await signed_form(request, self.settings)))

        @router.post("/twilio/speech")
        async def speech(request: Request) -> Response:
            """What Twilio recognised the caller saying."""
            form = await signed_form(request, self.settings)
            text = form.get("SpeechResult", "").strip()
            if not text:
                return twiml(self._listen(VoiceResponse(), "Sorry, I did not catch that."))
            return twiml(await self._ask(form, text, token=_idempotency_token(request)))

        @router.post("/twilio/recording")
        async def recording(request: Request) -> Response:
            """A recording of the caller (<Record>'s action), transcribed by the speech helper."""
            form = await signed_form(request, self.settings)
            if not form.get("RecordingUrl"):
                return twiml(self._listen(VoiceResponse(), "Sorry, I did not catch that."))
            token = _idempotency_token(request)
            return twiml(await self._ask(form, "", recording=form["RecordingUrl"], token=token))

        @router.post("/twilio/wait")
        async def wait(
            request: Request, job: Annotated[str | None, Query(max_length=100)] = None
        ) -> Response:
            """Twilio comes back here while an answer (of `job`) is still on its way."""
            form = await signed_form(request, self.settings)
            return twiml(await self._wait(form, job))

        async def secret(
            given: Annotated[str | None, Header(alias=WEBHOOK_KEY_HEADER)] = None,
        ) -> None:
            check_secret(given, self.settings)

        @router.post("/upload", dependencies=[Depends(secret)])
        async def upload(
            file: Annotated[UploadFile, File()],
            sender: Annotated[str, Form(alias="from", min_length=1, max_length=500)],
            thread: Annotated[str | None, Form(max_length=500)] = None,
        ) -> UploadAnswer:
            """Recorded audio from anywhere (a voicemail box, an app): the answer as text."""
            return await self._upload(file, sender, thread or sender)

        return router

    async def _greet(self, form: dict[str, str]) -> VoiceResponse:
        if withheld(_caller(form)):  # every such caller would be one person, and see the others'
            logger.info("call from a withheld number (%s): not taken", form["From"])
            return goodbye(VoiceResponse(), self.settings, WITHHELD_SORRY)
        try:
            who = await self.sender(_caller(form))
        except PatchbayError as exc:
            logger.warning("call from %s: not taken (%s)", form["From"], exc.message)
            return goodbye(VoiceResponse(), self.settings, sorry(exc))
        if who.user is None:
            logger.info("call from %s: %s", form["From"], who.status)
            return turned_away(who, self.settings)
        return self._listen(VoiceResponse(), self.settings.greeting)

    def _listen(self, response: VoiceResponse, prompt: str) -> VoiceResponse:
        return listen(response, self.settings, prompt=prompt, base_url=self._base)

    async def _ask(
        self, form: dict[str, str], text: str, *, recording: str = "", token: str | None = None
    ) -> VoiceResponse:
        """Start the turn for what the caller said (or recorded) and answer if it is quick; a
        retried webhook (the same idempotency `token`) waits for the turn it started."""
        call_sid = _call_sid(form)
        if withheld(_caller(form)):
            return goodbye(VoiceResponse(), self.settings, WITHHELD_SORRY)
        try:
            who = await self.sender(_caller(form))
        except PatchbayError as exc:
            logger.warning("call %s: not answered (%s)", call_sid, exc.message)
            return self._listen(_said(sorry(exc), self.settings), "Anything else?")
        if who.user is None:
            return turned_away(who, self.settings)
        if not self._calls.asked(call_sid, token):
            turn = self._turn(who.user.id, call_sid, text, recording)
            self._calls.start(call_sid, turn, asked_by=token)
        return await self._answer(call_sid)

    async def _turn(self, user_id: str, call_sid: str, text: str, recording: str) -> JobEvent:
        """The turn's outcome, with the recording fetched first: within the time limit, as
        Twilio waits for the webhook's answer all the while."""
        attachments: list[AttachmentIn] = []
        if recording:
            attachments.append(
                await fetch_media(
                    self.http, recording, settings=self.settings, filename="recording"
                )
            )
        metadata: dict[str, object] = {"call_sid": call_sid}
        turn = self._turn_body(text, call_sid, attachments, metadata)
        async with self.core.stream_turn(turn, key=ActAs(user_id)) as (created, batches):
            self._calls.note_job(call_sid, created.job_id)
            return await _outcome(batches, created.job_id)

    async def _wait(self, form: dict[str, str], job: str | None) -> VoiceResponse:
        """The answer on its way; followed from here when another process (or this one before
        a restart) started it, as calls are not tied to one process."""
        call_sid = _call_sid(form)
        if job and not self._calls.under_way(call_sid):
            try:
                who = await self.sender(_caller(form))
            except PatchbayError as exc:
                logger.warning("call %s: not followed (%s)", call_sid, exc.message)
                return self._listen(_said(sorry(exc), self.settings), "Anything else?")
            if who.user is None:
                return turned_away(who, self.settings)
            self._calls.start(call_sid, self._follow(who.user.id, job), job_id=job)
        return await self._answer(call_sid)

    async def _follow(self, user_id: str, job_id: str) -> JobEvent:
        async with self.core.job_events(job_id, key=ActAs(user_id)) as batches:
            return await _outcome(batches, job_id)

    async def _answer(self, call_sid: str) -> VoiceResponse:
        """The call's answer if it comes within the time limit; else a pause and a redirect."""
        if not self._calls.under_way(call_sid):
            return self._listen(VoiceResponse(), "Sorry, I lost track. Please ask again.")
        try:
            result = await self._calls.wait(call_sid, self.settings.time_limit_s)
        except PatchbayError as exc:
            logger.warning("call %s: the turn failed (%s)", call_sid, exc.message)
            return self._listen(_said(sorry(exc), self.settings), "Anything else?")
        if result is None:
            response = VoiceResponse()
            response.pause(length=1)
            job = self._calls.job(call_sid)
            query = f"?{urlencode({'job': job})}" if job else ""
            response.redirect(f"{self._base}/voice/twilio/wait{query}", method="POST")
            return response
        return self._listen(_said(outcome_text(result), self.settings), "Anything else?")

    async def _upload(self, file: UploadFile, sender: str, thread: str) -> UploadAnswer:
        try:
            who = await self.sender(sender)
            if who.user is None:
                return UploadAnswer(status=who.status, text=pairing_message(who))
            data = await file.read(self.settings.max_media_bytes + 1)
            if len(data) > self.settings.max_media_bytes:
                raise PayloadTooLarge(f"the file is over {self.settings.max_media_bytes} bytes")
            audio = AttachmentIn(
                media_type=file.content_type or "application/octet-stream",
                data=base64.b64encode(data).decode(),
                filename=file.filename,
            )
            result = await self.turn(who.user.id, "", thread=thread, attachments=[audio])
        except PatchbayError as exc:
            raise HTTPException(exc.status, exc.message) from exc
        return UploadAnswer(status="known", text=answer_text(result))

    async def close(self) -> None:
        self._calls.cancel_all()
        await super().close()


async def _outcome(batches: AsyncIterator[list[JobEvent]], job_id: str) -> JobEvent:
    async for batch in batches:
        for event in batch:
            if event.terminal:
                return event
    raise CoreUnavailable(f"the core stopped telling how job {job_id} went; please ask again")


def _said(text: str, settings: VoiceSettings) -> VoiceResponse:
    response = VoiceResponse()
    say(response, text, settings)
    return response


def _idempotency_token(request: Request) -> str | None:
    return request.headers.get(IDEMPOTENCY_HEADER) or None


def withheld(number: str) -> bool:
    """Whether the caller hid their number: Twilio then sends a word (`anonymous`) or the word's
    keypad digits (+266696687) in place of one. (A Twilio Client or SIP caller, `client:ann`,
    `sip:ann@example.org`, has an address without digits, and is no hidden one.)"""
    return number.strip().lower() in WITHHELD


def _caller(form: dict[str, str]) -> str:
    if not form.get("From"):
        raise HTTPException(400, "a Twilio voice webhook has a From field")
    return form["From"]


def _call_sid(form: dict[str, str]) -> str:
    if not form.get("CallSid"):
        raise HTTPException(400, "a Twilio voice webhook has a CallSid field")
    return form["CallSid"]


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(VoiceChannel)
