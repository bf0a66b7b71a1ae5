"""What happens to one incoming mail, however it came (SMTP or IMAP): checks, the sender's
policy, the turn, and the SMTP verdict. A mail is accepted only once its turn is stored in the
core; whatever cannot be handled now gets a 4xx, so the sender's server tries again later."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from pydantic import ValidationError

from patchbay.channels.base import Channel, delivery_key, pairing_message
from patchbay.channels.email import compose
from patchbay.channels.email.answers import mail_answers
from patchbay.channels.email.compose import ReplyTo
from patchbay.channels.email.parse import InboundMail, UnreadableMail, parse_mail
from patchbay.channels.email.relay import Relay, RelayUnavailable
from patchbay.channels.email.settings import EmailSettings
from patchbay.channels.limits import RecentIds, SenderRate
from patchbay.channels.owed import Owed
from patchbay.errors import DuplicateDelivery, PatchbayError
from patchbay.schemas.options import MAX_TEXT
from patchbay.schemas.senders import SenderResolved

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    code: int
    text: str  # with its enhanced status code (RFC 3463)

    @property
    def line(self) -> str:
        """The SMTP reply: one line (a reason may come from the core), within RFC 5321's 512."""
        return f"{self.code} {' '.join(self.text.split())}"[:500]


ANSWERED = Verdict(250, "2.0.0 this mail came before and was answered once")


def later(exc: PatchbayError) -> Verdict:
    logger.warning("mail deferred: %s", exc.message)
    return Verdict(451, f"4.3.0 cannot take this mail just now ({exc.code}); try again later")


def too_many(wait_s: float) -> Verdict:
    return Verdict(451, f"4.7.1 too many mails from you; try again in {wait_s:.0f} s")


def refused(sender: str, reason: str | None) -> Verdict:
    return Verdict(550, f"5.7.1 <{sender}> may not write here: {reason or 'not let in'}")


class Inbox:
    def __init__(self, channel: Channel[EmailSettings], relay: Relay) -> None:
        self.channel = channel
        self.settings = channel.settings
        self.relay = relay
        # A first check, in memory: the core refuses a mail it took before (its Message-ID is the
        # turn's delivery_id) even after a restart.
        self.seen = RecentIds()
        self.told = RecentIds()  # "address code": pairing notes already mailed
        self.busy: set[str] = set()
        self.rate = SenderRate(self.settings.max_mails_per_minute)
        self.answers = mail_answers(
            channel.core, relay, channel=channel.name, settings=self.settings
        )

    async def check_sender(self, mail_from: str) -> Verdict | None:
        """At RCPT: refuse a flooding sender, or an unknown one under `allowlist`, before DATA."""
        sender = mail_from.lower()
        wait = self.rate.wait_s(sender) if sender else 0.0
        if wait:
            return too_many(wait)
        if sender and self.settings.policy == "allowlist":  # resolving stores nothing here
            try:
                who = await self.channel.sender(sender)
            except PatchbayError as exc:
                return later(exc)
            if who.status == "refused":
                return refused(sender, who.reason)
        return None

    async def receive(self, raw: bytes, *, mail_from: str | None) -> Verdict:
        """Handle one mail. `mail_from`: the envelope sender, "" for a bounce, None if unknown."""
        if mail_from == "":
            return Verdict(250, "2.0.0 bounces are not answered")
        try:  # in a thread: the loop serves the other sessions while a large mail is read
            mail = await asyncio.to_thread(parse_mail, raw)
        except UnreadableMail as exc:
            return Verdict(550, f"5.6.0 {exc}")
        if mail.automatic:
            logger.info("not answering the automatic mail %s", mail.key)
            return Verdict(250, "2.0.0 automatic mail is not answered")
        envelope = (mail_from or mail.sender).lower()
        if self.settings.require_envelope_match and envelope != mail.sender:
            return Verdict(
                550,
                f"5.7.1 the From address <{mail.sender}> is not the sender <{envelope}>; "
                "send from the address you write as",
            )
        key = f"{mail.sender} {mail.key}"  # another sender cannot silence this one's mail
        if key in self.seen:
            return ANSWERED
        if key in self.busy:
            return Verdict(451, "4.3.0 this mail is being handled; try again later")
        wait = self.rate.take(mail.sender)
        if wait:
            return too_many(wait)
        self.busy.add(key)
        try:
            verdict = await self._handle(mail)
        except ValidationError as exc:  # past a limit of the core's (a header's length)
            logger.warning("mail %s from %s refused: %s", mail.key, mail.sender, exc)
            verdict = Verdict(554, "5.6.0 this mail's headers are past what patchbay keeps")
        finally:
            self.busy.discard(key)
        if verdict.code < 300:
            self.seen.add(key)
        return verdict

    async def close(self) -> None:
        await self.answers.close()

    async def _handle(self, mail: InboundMail) -> Verdict:
        try:
            who = await self.channel.sender(mail.sender, mail.display_name)
        except PatchbayError as exc:
            return later(exc)
        if who.status == "refused" or (who.user is None and who.code is None):
            return refused(mail.sender, who.reason)
        if who.user is None:
            return await self._pairing(mail, who)
        return await self._start(mail, who.user.id)

    async def _pairing(self, mail: InboundMail, who: SenderResolved) -> Verdict:
        told = f"{mail.sender} {who.code}"
        if told in self.told:
            return Verdict(
                550,
                f"5.7.1 an admin has yet to let you in (your code is {who.code}); "
                "write again once they have",
            )
        note = compose.reply(mail, sender=self.settings.address, text=pairing_message(who))
        try:
            await self.relay.send(note)
        except RelayUnavailable as exc:
            return later(exc)
        self.told.add(told)
        logger.info("sent a pairing code to %s", mail.sender)
        return Verdict(250, "2.0.0 you will get a pairing code by mail")

    async def _start(self, mail: InboundMail, user_id: str) -> Verdict:
        if len(mail.prompt) > MAX_TEXT:
            return Verdict(552, f"5.3.4 the text is over {MAX_TEXT} characters; send less")
        delivery = delivery_key(mail.sender, mail.key)
        reply = ReplyTo.of(mail).to_json()  # the answer is owed until the channel sent it
        try:  # the core answers once the turn is stored and its job queued
            created = await self.channel.start_turn(
                user_id,
                mail.prompt,
                thread=mail.thread,
                attachments=mail.attachments,
                metadata={"message_id": mail.key, "from": mail.sender, "subject": mail.subject},
                delivery_id=delivery,
                reply=reply,
                holder=self.answers.holder,
            )
        except DuplicateDelivery as exc:
            # Taken before. Its answer may still be owed: the mail was deferred after the core
            # stored its turn (the core's reply was lost), or this channel restarted before
            # sending it. Then this delivery is taken, and the answer follows.
            try:
                owed = await self.answers.follow_taken(exc, user_id, delivery, reply)
            except PatchbayError as lost:
                return later(lost)
            if not owed:
                logger.info("mail %s from %s was taken before", mail.key, mail.sender)
                return ANSWERED
            return Verdict(250, f"2.0.0 taken (job {exc.job_id}); the answer comes by mail")
        except PatchbayError as exc:
            # This mail will never do: malformed, too large, or files no helper can read.
            if exc.status in (400, 413, 415, 422) and not exc.retryable:
                return Verdict(554, f"5.6.0 {exc.message}")
            return later(exc)
        self.answers.follow(Owed(user_id, delivery, created, reply))
        logger.info("mail %s from %s is job %s", mail.key, mail.sender, created.job_id)
        return Verdict(250, f"2.0.0 taken (job {created.job_id}); the answer comes by mail")
