"""Answers a channel owes, kept in the core until the channel sent them.

A channel that sends an answer itself, after its webhook or SMTP session has ended, gives its
turn a `delivery_id` and a `reply` (what it needs to send the answer: a mail's headers, the
numbers of an SMS). The core keeps that answer owed to the channel until the channel says it was
sent (see `schemas.deliveries`). `OwedAnswers` does the channel's side: it follows each owed
answer's job to its end, hands the outcome to the channel's `send`, tells the core, and, at start
and every `sweep_s`, asks the core what is still owed (an answer a restart interrupted, or one
`send` could not deliver then) and follows each one it is not following already.

One channel process at a time holds an owed answer (a lease it renews as it sweeps): the one that
started the turn, or the one that took it up after its holder went away. So channel processes on
many machines send each answer once. An answer goes out at least once: if the channel stops
between sending it and telling the core, it is sent again after the restart.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from patchbay.backoff import Backoff
from patchbay.channels.tasks import KeyedTasks
from patchbay.client import ActAs, CoreClient
from patchbay.errors import CoreUnavailable, DuplicateDelivery, NotFound, PatchbayError
from patchbay.schemas.chats import MessageRead
from patchbay.schemas.deliveries import AnswerSent, DeliveryKey, HoldOwed, OwedAnswer
from patchbay.schemas.jobs import ErrorInfo, JobEvent
from patchbay.schemas.turns import TurnRead

logger = logging.getLogger(__name__)

FOLLOW = Backoff(1.0, cap_s=60.0)  # reconnecting to a core that went away
FOLLOW_TRIES = 60  # backing off to a minute: about an hour
MAX_OWED = 500  # answers asked for per sweep
LOST = "the answer was lost"

# Sends the answer (its job's terminal event) to `reply`. False: it could not go now, and stays
# owed for a later sweep. A `ValueError` means it never can (a reply the channel cannot use):
# the answer is given up.
Send = Callable[[dict[str, object], JobEvent], Awaitable[bool]]


class OwedSettings(BaseModel):
    """How a channel that sends its answers later looks for the ones it still owes."""

    # How often (and once at start). The process's hold on what it sends lasts five times this,
    # and a new turn's first hold five minutes, so a sweep must come well within those.
    owed_sweep_s: float = Field(default=60.0, gt=0, le=60)
    # Who this process is to the core when it holds answers: the same after a restart, so it
    # takes back its own at once; another process's wait for its lease to run out.
    owed_holder: str | None = Field(default=None, max_length=200)  # default: see `default_holder`
    # Past this an answer is given up with a warning (mail servers give up after five days).
    reply_max_age_h: float = Field(default=120.0, gt=0)


@dataclass(frozen=True, slots=True)
class Owed:
    """An answer a channel owes: whose, for which delivery, its turn, and where it goes."""

    user_id: str
    delivery_id: str
    turn: TurnRead
    reply: dict[str, object]

    @property
    def key(self) -> tuple[str, str]:
        return self.user_id, self.delivery_id


def default_holder(channel: str, port: int | None) -> str:
    """Who a channel process is to the core, unless its settings say: its host, its channel and
    the port it listens on. The same after a restart; two processes of one channel on one host
    (behind one load balancer, say) listen on two ports, so they hold answers apart instead of
    both taking and sending the same ones."""
    where = f"{socket.gethostname()}/{channel}"
    return where if port is None else f"{where}:{port}"


class OwedAnswers:
    def __init__(
        self,
        core: CoreClient,
        *,
        channel: str,
        send: Send,
        max_age_s: float,
        holder: str | None = None,
        sweep_s: float = OwedSettings().owed_sweep_s,
    ) -> None:
        self.core = core
        self.channel = channel
        self.max_age_s = max_age_s
        self.holder = holder or default_holder(channel, None)
        self._sweep_s = sweep_s
        self._lease_s = max(5 * sweep_s, 1.0)  # a hold outlasts a few missed sweeps
        self._send = send
        self._held: KeyedTasks[tuple[str, str]] = KeyedTasks()  # by `Owed.key`: answered here

    @classmethod
    def of(
        cls, core: CoreClient, channel: str, settings: OwedSettings, send: Send, *, port: int | None
    ) -> OwedAnswers:
        """The answers owed to `channel`, as its settings say; `port` is where this process
        listens (see `default_holder`)."""
        return cls(
            core,
            channel=channel,
            send=send,
            max_age_s=settings.reply_max_age_h * 3600,
            holder=settings.owed_holder or default_holder(channel, port),
            sweep_s=settings.owed_sweep_s,
        )

    def following(self, user_id: str, delivery_id: str) -> bool:
        return (user_id, delivery_id) in self._held

    def follow(self, owed: Owed) -> None:
        """Answer `owed` in the background (once: one followed already is left to its task)."""
        if owed.key not in self._held:
            self._held.put(owed.key, asyncio.create_task(self._answer(owed)))

    async def answer(self, owed: Owed) -> None:
        """Answer `owed` and return once it went (or stays owed, for a later sweep); one being
        answered here already is waited for."""
        task = self._held.get(owed.key)
        if task is None:
            task = asyncio.create_task(self._answer(owed))
            self._held.put(owed.key, task)
        await task

    async def answer_within(self, owed: Owed, timeout_s: float | None) -> JobEvent | None:
        """The outcome, if the job ends within `timeout_s`: the caller delivers it at once (it is
        marked sent). Else None, and the answer is followed and sent later like any owed one (as
        it is when a sweep found it first)."""
        if owed.key in self._held:
            return None
        outcome = asyncio.create_task(self._outcome(owed.user_id, owed.turn))
        self._held.put(owed.key, outcome)
        try:
            done, _ = await asyncio.wait({outcome}, timeout=timeout_s)
        except asyncio.CancelledError:  # the caller went away: send it later instead
            self._held.put(owed.key, asyncio.create_task(self._answer(owed, outcome)))
            raise
        if outcome in done and not outcome.cancelled() and outcome.exception() is None:
            self._held.put(owed.key, asyncio.create_task(self._sent(owed)))
            return outcome.result()
        self._held.put(owed.key, asyncio.create_task(self._answer(owed, outcome)))
        return None

    async def follow_taken(
        self, taken: DuplicateDelivery, user_id: str, delivery_id: str, reply: dict[str, object]
    ) -> bool:
        """A delivery the core took before: whether its answer is still owed (its first delivery
        was deferred after the turn was stored, or the channel stopped before sending it). If so,
        it is followed here, unless it is already, or another process holds it (the one the
        first delivery reached, which sends it)."""
        if not taken.owed or self.following(user_id, delivery_id):
            return taken.owed
        taken_here = await self.core.hold_owed(
            self._hold(DeliveryKey(user_id=user_id, delivery_id=delivery_id))
        )
        for owed in taken_here:
            logger.info("%s: %s was taken before; answering it", self.channel, delivery_id)
            self.follow(Owed(user_id, delivery_id, _turn(owed), reply))
        return True

    def _hold(self, take: DeliveryKey | None = None) -> HoldOwed:
        """A sweep's hold: renewing the answers followed here, taking more. With `take`, a hold
        on that answer alone."""
        if take is not None:
            return HoldOwed(
                channel=self.channel,
                holder=self.holder,
                lease_s=self._lease_s,
                limit=0,
                take=[take],
            )
        renew = [DeliveryKey(user_id=user, delivery_id=delivery) for user, delivery in self._held]
        return HoldOwed(
            channel=self.channel,
            holder=self.holder,
            lease_s=self._lease_s,
            limit=MAX_OWED,
            renew=renew,
        )

    async def sweep_forever(self) -> None:
        """Follow the answers the core says this channel owes, now and every `sweep_s`."""
        while True:
            try:
                await self.sweep()
            except PatchbayError as exc:
                logger.warning("%s: could not ask for the answers owed: %s", self.channel, exc)
            await asyncio.sleep(self._sweep_s)

    async def sweep(self) -> None:
        """Renew the hold on the answers being sent here; take those nobody sends and follow
        them."""
        now = datetime.now(UTC)
        for owed in await self.core.hold_owed(self._hold()):
            if self.following(owed.user_id, owed.delivery_id):
                continue
            age_s = (now - owed.created_at).total_seconds()
            if age_s > self.max_age_s:
                logger.warning(
                    "%s: giving up the answer to %s, owed for %.0f h",
                    self.channel,
                    owed.delivery_id,
                    age_s / 3600,
                )
                await self.core.answer_sent(_answered(owed))
                continue
            logger.info(
                "%s: answering %s, owed since %s", self.channel, owed.delivery_id, owed.created_at
            )
            self.follow(Owed(owed.user_id, owed.delivery_id, _turn(owed), owed.reply))

    async def close(self, *, grace_s: float = 0.0) -> None:
        """Stop, after `grace_s` for answers on their way (the others stay owed, for the next
        start)."""
        tasks = self._held.all()
        if tasks and grace_s > 0:
            await asyncio.wait(tasks, timeout=grace_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _answer(self, owed: Owed, outcome: asyncio.Task[JobEvent] | None = None) -> None:
        job = owed.turn.job_id
        try:
            event = await (outcome or self._outcome(owed.user_id, owed.turn))
            try:
                sent = await self._send(owed.reply, event)
            except ValueError as exc:
                logger.error(
                    "%s: giving up the answer to %s: %s", self.channel, owed.delivery_id, exc
                )
                sent = True  # nothing would ever send it
            if not sent:
                logger.warning(
                    "%s: the answer to %s stays owed for now", self.channel, owed.delivery_id
                )
                return
            logger.info("%s: answered %s (job %s)", self.channel, owed.delivery_id, job)
            await self._sent(owed)
        except asyncio.CancelledError:
            raise
        except Exception:  # a task's boundary: log it, keep the channel going
            logger.exception(
                "%s: could not answer %s (job %s)", self.channel, owed.delivery_id, job
            )

    async def _sent(self, owed: Owed) -> None:
        """Tell the core the answer went out, trying while it is away (until then this answer
        stays held here, so a sweep does not send it again)."""
        sent = AnswerSent(channel=self.channel, user_id=owed.user_id, delivery_id=owed.delivery_id)
        async for _ in FOLLOW.tries(FOLLOW_TRIES):
            try:
                await self.core.answer_sent(sent)
                return
            except CoreUnavailable as exc:
                logger.warning(
                    "%s: could not say %s was answered: %s", self.channel, owed.delivery_id, exc
                )
        logger.error(
            "%s: the core never heard %s was answered; it may go again",
            self.channel,
            owed.delivery_id,
        )

    async def _outcome(self, user_id: str, created: TurnRead) -> JobEvent:
        """The job's terminal event, following its events across a core that goes away."""
        after = 0
        async for _ in FOLLOW.tries(FOLLOW_TRIES):
            try:
                async with self.core.job_events(
                    created.job_id, after=after, key=ActAs(user_id)
                ) as batches:
                    async for batch in batches:
                        for event in batch:
                            after = event.seq
                            if event.terminal:
                                return event
            except NotFound:  # the job is gone from the events: read the chat
                return await self._stored_outcome(user_id, created)
            except CoreUnavailable as exc:
                logger.warning("following job %s: %s", created.job_id, exc.message)
        raise CoreUnavailable(f"lost job {created.job_id}: the core stayed away")

    async def _stored_outcome(self, user_id: str, created: TurnRead) -> JobEvent:
        messages = await self.core.call_as(
            list[MessageRead], "GET", f"/v1/chats/{created.chat_id}/messages", key=ActAs(user_id)
        )
        found = next((m for m in messages if m.id == created.assistant_message_id), None)
        if found is not None and found.status == "complete":
            return JobEvent(job_id=created.job_id, seq=0, type="done", content=found.content)
        reason = (found.error if found is not None else None) or LOST
        error = ErrorInfo(code="answer_lost", message=reason)
        content = found.content if found is not None else ""
        return JobEvent(job_id=created.job_id, seq=0, type="failed", content=content, error=error)


def _answered(owed: OwedAnswer) -> AnswerSent:
    return AnswerSent(channel=owed.channel, user_id=owed.user_id, delivery_id=owed.delivery_id)


def _turn(owed: OwedAnswer) -> TurnRead:
    return TurnRead(
        chat_id=owed.chat_id,
        job_id=owed.job_id,
        user_message_id=owed.user_message_id,
        assistant_message_id=owed.assistant_message_id,
        model=owed.model,
    )
