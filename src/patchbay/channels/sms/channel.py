"""The SMS channel: Twilio's messaging webhook (`POST /sms/twilio`, answered in TwiML) and a
generic JSON webhook for other gateways (`POST /sms/inbound`). Each text is a turn in the
sender's chat (one chat per phone number); answers that outlast the webhook go out later
through Twilio's REST API, owed in the core until they went (see `channels.owed`), so a restart
or a Twilio that is away loses none."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from twilio.twiml.messaging_response import MessagingResponse

from patchbay.channels.base import (
    Channel,
    chunks,
    delivery_key,
    pairing_message,
    unique_delivery_id,
)
from patchbay.channels.limits import FloodGate, RecentIds
from patchbay.channels.owed import Owed, OwedAnswers, OwedSettings
from patchbay.channels.sms.media import fetch_media, media_of
from patchbay.channels.sms.outbound import SmsNotSent, TwilioMessages
from patchbay.channels.sms.replies import FLOODED, outcome_text, sorry
from patchbay.channels.sms.segments import message_bodies
from patchbay.channels.sms.twilio_format import (
    WEBHOOK_KEY_HEADER,
    TwilioSettings,
    check_secret,
    signed_form,
    twiml,
)
from patchbay.client import CoreClient
from patchbay.errors import DuplicateDelivery, PatchbayError
from patchbay.plugins import hookimpl
from patchbay.plugins.hookspecs import RegisterChannel
from patchbay.schemas.jobs import JobEvent
from patchbay.schemas.options import MAX_TEXT

logger = logging.getLogger(__name__)


class SmsSettings(TwilioSettings, OwedSettings):
    port: int | None = 8090
    reply_max_age_h: float = Field(default=24.0, gt=0)  # a later answer, given up past it
    from_number: str | None = None  # sends later answers from it; default: the number texted
    segment_length: int = Field(default=153, ge=10, le=1600)  # the generic webhook's replies
    max_body: int = Field(default=1600, ge=10, le=1600)  # per <Message>: Twilio joins segments
    max_messages: int = Field(default=10, ge=1)  # longer answers are cut
    per_minute: int = Field(default=10, ge=1)  # messages one sender may send in a minute
    segments_per_s: float = Field(default=1.0, gt=0)  # sending pace per number


@dataclass(frozen=True, slots=True)
class Sms:
    sender: str
    text: str
    message_id: str | None = None
    to: str | None = None  # the number the sender wrote to
    media: tuple[tuple[str, str | None], ...] = ()  # (URL, media type)


class InboundSms(BaseModel):
    """The generic webhook's body: `{"from": "+15550001", "text": "hi", "id": "gateway-id"}`."""

    model_config = ConfigDict(populate_by_name=True)

    sender: str = Field(alias="from", min_length=1, max_length=500)
    text: str = Field(max_length=MAX_TEXT)
    id: str | None = Field(default=None, max_length=500)


class SmsReplies(BaseModel):
    replies: list[str]  # one SMS segment each, in order


class SmsChannel(Channel[SmsSettings]):
    name = "sms"
    settings_model = SmsSettings

    def __init__(self, settings: SmsSettings, core: CoreClient) -> None:
        super().__init__(settings, core)
        self._seen = RecentIds()
        self._flood = FloodGate(settings.per_minute)
        self.outbox = TwilioMessages(
            settings,
            lambda: self.http,
            segments_per_s=settings.segments_per_s,
            segment_length=settings.segment_length,
        )
        self.answers = OwedAnswers.of(
            core, self.name, settings, self._send_later, port=settings.port
        )

    async def run(self) -> None:
        """Send the answers still owed (after a restart, or Twilio away), now and then."""
        await self.answers.sweep_forever()

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/sms", tags=["sms"])

        @router.post("/twilio")
        async def twilio(request: Request) -> Response:
            form = await signed_form(request, self.settings)
            if not form.get("From"):
                raise HTTPException(400, "a Twilio message webhook has a From field")
            sms = Sms(
                sender=form["From"],
                text=form.get("Body", ""),
                message_id=form.get("MessageSid"),
                to=form.get("To"),
                media=tuple(media_of(form)),
            )
            answer = await self.answer(sms, time_limit_s=self.settings.time_limit_s)
            reply = MessagingResponse()
            for body in message_bodies(
                answer or "",
                max_body=self.settings.max_body,
                max_messages=self.settings.max_messages,
            ):
                reply.message(body)
            return twiml(reply)

        async def secret(
            given: Annotated[str | None, Header(alias=WEBHOOK_KEY_HEADER)] = None,
        ) -> None:
            check_secret(given, self.settings)

        @router.post("/inbound", dependencies=[Depends(secret)])
        async def inbound(sms: InboundSms) -> SmsReplies:
            answer = await self.answer(Sms(sender=sms.sender, text=sms.text, message_id=sms.id))
            return SmsReplies(replies=chunks(answer or "", self.settings.segment_length))

        return router

    async def answer(self, sms: Sms, *, time_limit_s: float | None = None) -> str | None:
        """What to reply at once; None for nothing (a repeated delivery, a flood, a refused
        sender, or an answer that comes later by the outbound sender).

        Repeated deliveries are caught here while the channel remembers them, and by the core
        (the message id is the turn's `delivery_id`) after it restarted."""
        if sms.message_id and not self._seen.add(f"{sms.sender} {sms.message_id}"):
            logger.info(
                "sms %s from %s: a repeated delivery, not answered", sms.message_id, sms.sender
            )
            return None
        gate = self._flood.check(sms.sender)
        if gate != "pass":
            logger.info(
                "sms from %s: over %d a minute (%s)", sms.sender, self.settings.per_minute, gate
            )
            return FLOODED if gate == "warn" else None
        try:
            return await self._answer(sms, time_limit_s)
        except DuplicateDelivery:
            logger.info("sms %s from %s: taken when it came before", sms.message_id, sms.sender)
            return None
        except PatchbayError as exc:
            logger.warning("sms from %s: not answered (%s)", sms.sender, exc.message)
            return sorry(exc)

    async def _answer(self, sms: Sms, time_limit_s: float | None) -> str | None:
        deadline = asyncio.get_running_loop().time() + (time_limit_s or 0)
        who = await self.sender(sms.sender)
        if who.user is None:
            logger.info("sms from %s: %s", sms.sender, who.status)
            return pairing_message(who) if who.status == "pairing" else None
        attachments = [
            await fetch_media(self.http, url, settings=self.settings, media_type=kind)
            for url, kind in sms.media
        ]
        metadata: dict[str, object] = {"message_id": sms.message_id, "to": sms.to}
        # Every text is a delivery, so its answer can be owed: a gateway's without an id too.
        delivery = delivery_key(sms.message_id) if sms.message_id else unique_delivery_id()
        reply: dict[str, object] = {"to": sms.sender, "from": self.settings.from_number or sms.to}
        user_id = who.user.id
        try:  # the core answers once the turn is stored and its job queued
            created = await self.start_turn(
                user_id,
                sms.text,
                thread=sms.sender,
                attachments=attachments,
                metadata={k: v for k, v in metadata.items() if v is not None},
                delivery_id=delivery,
                reply=reply,
                holder=self.answers.holder,
            )
        except DuplicateDelivery as exc:
            await self.answers.follow_taken(exc, user_id, delivery, reply)
            raise
        owed = Owed(user_id, delivery, created, reply)
        if time_limit_s is None:
            outcome = await self.answers.answer_within(owed, None)
        else:
            remaining = deadline - asyncio.get_running_loop().time()
            outcome = await self.answers.answer_within(owed, max(remaining, 0.1))
        if outcome is None:
            logger.info("sms from %s: the answer takes long; it will be sent later", sms.sender)
            return None
        return outcome_text(outcome)

    async def _send_later(self, reply: dict[str, object], outcome: JobEvent) -> bool:
        """Send an answer that outlasted the webhook through Twilio's API; False when Twilio
        is busy or away (it stays owed)."""
        to, number = reply.get("to"), reply.get("from")
        if not isinstance(to, str) or not isinstance(number, str):
            raise ValueError("no number to send from: set the channel's from_number")
        try:
            for body in message_bodies(
                outcome_text(outcome),
                max_body=self.settings.max_body,
                max_messages=self.settings.max_messages,
            ):
                await self.outbox.send(to=to, from_=number, body=body)
        except SmsNotSent as exc:
            if not exc.retryable:
                raise ValueError(exc.message) from exc
            logger.warning("sms to %s: not sent now (%s)", to, exc.message)
            return False
        return True

    async def close(self) -> None:
        """Give answers still on their way a moment to go out, then stop (the others stay
        owed, for the next start)."""
        await self.answers.close(grace_s=self.settings.time_limit_s)
        await super().close()


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(SmsChannel)
