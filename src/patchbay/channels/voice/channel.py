"""The voice channel: Twilio's voice webhooks (`/voice/twilio…`, answered in TwiML) and an
upload of recorded audio (`POST /voice/upload`). A call is one chat (its thread is the CallSid);
recordings go to the core as attachments, which its speech helper turns into text.

Each question is a turn with a `delivery_id` made from the webhook (its recording, or Twilio's
idempotency token, the same when Twilio retries it): a webhook that comes again, here or at
another process, is not asked twice, and the redirect of an answer that outlasts the webhook names
it, so whichever process the redirect reaches finds the turn in the core, even one not stored yet
when the redirect was written. An upload's `delivery_id` is its thread and the uploader's `id`.
Once a call is over (Twilio's status callback), the jobs of its answers still coming are cancelled.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
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
from pydantic import BaseModel, Field
from twilio.twiml.voice_response import VoiceResponse

from patchbay.channels.base import Channel, delivery_key, pairing_message
from patchbay.channels.sms.media import fetch_media
from patchbay.channels.sms.replies import outcome_text, sorry
from patchbay.channels.sms.twilio_format import (
    WEBHOOK_KEY_HEADER,
    TwilioSettings,
    check_secret,
    signed_form,
    twiml,
)
from patchbay.channels.voice import webhooks
from patchbay.channels.voice.calls import Asked, Caller, CallTurns
from patchbay.channels.voice.speech import SpeechSettings, goodbye, listen, say, turned_away
from patchbay.client import ActAs, CoreClient
from patchbay.errors import (
    CoreUnavailable,
    DeliveryNotFound,
    DuplicateDelivery,
    NotFound,
    PatchbayError,
    PayloadTooLarge,
)
from patchbay.plugins import hookimpl
from patchbay.plugins.hookspecs import RegisterChannel
from patchbay.schemas.jobs import JobEvent
from patchbay.schemas.turns import MAX_DELIVERY_ID, AttachmentIn

logger = logging.getLogger(__name__)

WITHHELD_SORRY = "Sorry, I cannot take calls from a hidden number. Please call again showing yours."
LOST = "Sorry, I lost track. Please ask again."
FIND_EVERY_S = 0.5


class VoiceSettings(TwilioSettings, SpeechSettings):
    port: int | None = 8091
    # How long a redirect looks for a question's turn that no process has stored: the one that
    # took the webhook may still be fetching the recording, or the core transcribing it; or it
    # stopped. Then the caller is asked again.
    lost_after_s: float = Field(default=300.0, gt=0)


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
        self._route_calls(router)
        self._route_uploads(router)
        return router

    def _route_calls(self, router: APIRouter) -> None:
        """Twilio's webhooks of a call, each signed by Twilio."""

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
            asked = webhooks.asked(form, request)
            return twiml(await self._ask(form, asked, text))

        @router.post("/twilio/recording")
        async def recording(request: Request) -> Response:
            """A recording of the caller (<Record>'s action), transcribed by the speech helper."""
            form = await signed_form(request, self.settings)
            if not form.get("RecordingUrl"):
                return twiml(self._listen(VoiceResponse(), "Sorry, I did not catch that."))
            asked = webhooks.asked(form, request)
            return twiml(await self._ask(form, asked, "", recording=form["RecordingUrl"]))

        @router.post("/twilio/wait")
        async def wait(
            request: Request,
            delivery: Annotated[str | None, Query(max_length=MAX_DELIVERY_ID)] = None,
            since: Annotated[int | None, Query()] = None,
            job: Annotated[str | None, Query(max_length=100)] = None,
        ) -> Response:
            """Twilio comes back here while an answer is still on its way: that of the turn of
            `delivery`, asked at `since` (its `job` once known)."""
            form = await signed_form(request, self.settings)
            if delivery is None and job is None:
                return twiml(self._listen(VoiceResponse(), LOST))
            asked = Asked(delivery, int(time.time()) if since is None else since, job)
            return twiml(await self._wait(form, asked))

        @router.post("/twilio/status")
        async def status(request: Request) -> Response:
            """The call's status callback (the number's "call status changes" URL): once the
            call is over (the caller hung up), its answers still on their way are stopped, as
            nobody will hear them."""
            form = await signed_form(request, self.settings)
            call_sid = webhooks.call_sid(form)
            if form.get("CallStatus") in webhooks.CALL_ENDED:
                await self._hang_up(call_sid)
            return twiml(VoiceResponse())

    def _route_uploads(self, router: APIRouter) -> None:
        """Recordings uploaded with the channel's shared secret."""

        async def secret(
            given: Annotated[str | None, Header(alias=WEBHOOK_KEY_HEADER)] = None,
        ) -> None:
            check_secret(given, self.settings)

        @router.post("/upload", dependencies=[Depends(secret)])
        async def upload(
            file: Annotated[UploadFile, File()],
            sender: Annotated[str, Form(alias="from", min_length=1, max_length=500)],
            thread: Annotated[str | None, Form(max_length=500)] = None,
            upload_id: Annotated[str | None, Form(alias="id", max_length=500)] = None,
        ) -> UploadAnswer:
            """Recorded audio from anywhere (a voicemail box, an app): the answer as text. An
            upload sent again with the same `id` is asked once, and answered alike."""
            thread = thread or sender
            delivery = delivery_key(thread, upload_id) if upload_id else None
            return await self._upload(file, sender, thread, delivery)

    async def _greet(self, form: dict[str, str]) -> VoiceResponse:
        # every such caller would be one person, and see the others'
        if webhooks.withheld(webhooks.caller(form)):
            logger.info("call from a withheld number (%s): not taken", form["From"])
            return goodbye(VoiceResponse(), self.settings, WITHHELD_SORRY)
        try:
            who = await self.sender(webhooks.caller(form))
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
        self, form: dict[str, str], asked: Asked, text: str, *, recording: str = ""
    ) -> VoiceResponse:
        """Start the turn for what the caller said (or recorded) and answer if it is quick; a
        webhook that came before (the same `asked`) waits for the turn it started."""
        if webhooks.withheld(webhooks.caller(form)):
            return goodbye(VoiceResponse(), self.settings, WITHHELD_SORRY)
        call_sid = webhooks.call_sid(form)
        try:
            who = await self.sender(webhooks.caller(form))
        except PatchbayError as exc:
            logger.warning("call %s: not answered (%s)", call_sid, exc.message)
            return self._listen(_said(sorry(exc), self.settings), "Anything else?")
        if who.user is None:
            return turned_away(who, self.settings)
        if not self._calls.under_way(asked.key):
            turn = self._turn(who.user.id, call_sid, asked.key, text, recording)
            self._calls.start(asked, turn, caller=Caller(call_sid, who.user.id), storing=True)
        return await self._answer(asked.key)

    async def _turn(
        self, user_id: str, call_sid: str, delivery: str, text: str, recording: str
    ) -> JobEvent:
        """The turn's outcome, with the recording fetched first: within the time limit, as
        Twilio waits for the webhook's answer all the while. A delivery the core took before (the
        webhook retried after a restart, or at another process) is followed, not asked again."""
        attachments: list[AttachmentIn] = []
        if recording:
            attachments.append(
                await fetch_media(
                    self.http, recording, settings=self.settings, filename="recording"
                )
            )
        metadata: dict[str, object] = {"call_sid": call_sid}
        turn = self._turn_body(text, call_sid, attachments, metadata, delivery_id=delivery)
        try:
            async with self.core.stream_turn(turn, key=ActAs(user_id)) as (created, batches):
                self._calls.note_job(delivery, created.job_id)
                return await _outcome(batches, created.job_id)
        except DuplicateDelivery as taken:
            logger.info("call %s: asked before, as job %s; following it", call_sid, taken.job_id)
            self._calls.note_job(delivery, taken.job_id)
            return await self._follow(user_id, taken.job_id)

    async def _wait(self, form: dict[str, str], asked: Asked) -> VoiceResponse:
        """The answer on its way; followed from here when another process (or this one before
        a restart) started it, as calls are not tied to one process."""
        if not self._calls.under_way(asked.key):
            call_sid = webhooks.call_sid(form)
            try:
                who = await self.sender(webhooks.caller(form))
            except PatchbayError as exc:
                logger.warning("call %s: not followed (%s)", call_sid, exc.message)
                return self._listen(_said(sorry(exc), self.settings), "Anything else?")
            if who.user is None:
                return turned_away(who, self.settings)
            if not self._calls.under_way(asked.key):  # nor started by a request meanwhile
                follow = self._find(who.user.id, call_sid, asked)
                self._calls.start(asked, follow, caller=Caller(call_sid, who.user.id))
        return await self._answer(asked.key)

    async def _find(self, user_id: str, call_sid: str, asked: Asked) -> JobEvent:
        """The outcome of a question another process (or this one before a restart) took: its
        job is found by its delivery once the turn is stored."""
        job_id = asked.job_id or await self._find_job(user_id, asked)
        logger.info("call %s: following job %s", call_sid, job_id)
        return await self._follow(user_id, job_id)

    async def _find_job(self, user_id: str, asked: Asked) -> str:
        """The job of the question's turn, looked for until it is stored. Raises
        `DeliveryNotFound` once it was asked `lost_after_s` ago: nobody is storing it."""
        delivery = asked.delivery_id or ""  # `Asked` names a delivery where it names no job
        while True:
            try:
                found = await self.core.find_delivery(self.name, delivery, key=ActAs(user_id))
            except CoreUnavailable as exc:  # a core restarting: look again
                logger.warning("looking for %s: %s", delivery, exc.message)
                found = None
            if found is not None:
                self._calls.note_job(asked.key, found.job_id)
                return found.job_id
            if time.time() - asked.since > self.settings.lost_after_s:
                raise DeliveryNotFound(f"no turn took {delivery!r}: the question was lost")
            await asyncio.sleep(FIND_EVERY_S)

    async def _follow(self, user_id: str, job_id: str) -> JobEvent:
        async with self.core.job_events(job_id, key=ActAs(user_id)) as batches:
            return await _outcome(batches, job_id)

    async def _answer(self, key: str) -> VoiceResponse:
        """The question's answer if it comes within the time limit; else a pause and a redirect
        naming the question, for this process or any other."""
        if not self._calls.under_way(key):  # taken meanwhile by a request for the same question
            return self._listen(VoiceResponse(), LOST)
        try:
            result = await self._calls.wait(key, self.settings.time_limit_s)
        except NotFound as exc:  # its turn never stored, or its chat deleted since
            logger.warning("question %s: lost (%s)", key, exc.message)
            return self._listen(VoiceResponse(), LOST)
        except PatchbayError as exc:
            logger.warning("question %s: the turn failed (%s)", key, exc.message)
            return self._listen(_said(sorry(exc), self.settings), "Anything else?")
        if result is None:
            response = VoiceResponse()
            if not self._calls.under_way(key):  # the call ended meanwhile
                response.hangup()
                return response
            response.pause(length=1)
            query = urlencode(self._calls.asked(key).query())
            response.redirect(f"{self._base}/voice/twilio/wait?{query}", method="POST")
            return response
        return self._listen(_said(outcome_text(result), self.settings), "Anything else?")

    async def _hang_up(self, call_sid: str) -> None:
        """Stop the call's questions here, and their jobs in the core."""
        stopped = await self._calls.end(call_sid, grace_s=self.settings.time_limit_s)
        for caller, job_id in stopped:
            try:
                await self.core.cancel_job(job_id, key=ActAs(caller.user_id))
            except PatchbayError as exc:
                logger.warning(
                    "call %s ended; job %s not cancelled (%s)", call_sid, job_id, exc.message
                )
            else:
                logger.info("call %s ended: job %s cancelled", call_sid, job_id)

    async def _upload(
        self, file: UploadFile, sender: str, thread: str, delivery: str | None
    ) -> UploadAnswer:
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
            outcome = await self._upload_turn(who.user.id, audio, thread, delivery)
        except PatchbayError as exc:
            raise HTTPException(exc.status, exc.message) from exc
        return UploadAnswer(status="known", text=outcome_text(outcome))

    async def _upload_turn(
        self, user_id: str, audio: AttachmentIn, thread: str, delivery: str | None
    ) -> JobEvent:
        """The outcome of the upload's turn; of the turn that took it before, when the same
        upload came again (its uploader retried)."""
        try:
            result = await self.turn(
                user_id, "", thread=thread, attachments=[audio], delivery_id=delivery
            )
        except DuplicateDelivery as taken:
            logger.info("upload %s: asked before, as job %s; following it", delivery, taken.job_id)
            return await self._follow(user_id, taken.job_id)
        return result.outcome

    async def close(self) -> None:
        await self._calls.close(grace_s=self.settings.time_limit_s)
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


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(VoiceChannel)
