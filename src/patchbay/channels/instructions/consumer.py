"""The instruction consumer: a RabbitMQ ↔ HTTP bridge that reads no more of an instruction than
its type.

Each message body goes to the core's `POST /v1/instructions` as is, with the key from its
`api_key` header; the core's JSON envelope goes back to `reply_to` under the same
`correlation_id`. A request is acknowledged only once its answer is confirmed by the broker,
so a consumer that dies mid-instruction leaves it to be delivered again; one delivered again
after a broker outage gets the answer this consumer already has (`answers.py`). A generate is
acknowledged once the core has stored its turn, its answer owed to this channel, and answered
when the model is done (`later.py`); each sender has a fair share of the generates (`lanes.py`),
and those past it are put off to come back later (`deferral.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aio_pika
import orjson
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError

from patchbay.channels.instructions import API_KEY_HEADER, address
from patchbay.channels.instructions.answers import RecentAnswers
from patchbay.channels.instructions.deferral import Deferrals, put_off
from patchbay.channels.instructions.lanes import Lanes, SenderBusy, Ticket
from patchbay.channels.instructions.later import LaterAnswers, generating, holder_of
from patchbay.client import CoreClient
from patchbay.config import InstructionSettings
from patchbay.errors import (
    AuthenticationFailed,
    CoreUnavailable,
    CoreUnreachable,
    DuplicateDelivery,
    PatchbayError,
    PayloadTooLarge,
    error_from_dict,
)
from patchbay.schemas.instructions import GENERATE, OwedStart

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
RECONNECT_INTERVAL_S = 1.0  # a restarted broker is found again within about this long
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # RabbitMQ 4's default max_message_size
# What RabbitMQ or the connection to it raise; the message is then delivered again.
BROKER_ERRORS = (AMQPError, ChannelInvalidStateError, ConnectionError)


def error_envelope(error: PatchbayError) -> bytes:
    """The core's error envelope, for the few answers the consumer has to make itself."""
    return orjson.dumps(
        {"status": "error", "type": None, "message": error.message, "error": error.to_dict()}
    )


def as_envelope(status: int, answer: bytes) -> bytes:
    """The core's answer as an instruction envelope, also for errors raised outside the route.

    The core's body limit and crash handler answer `{"error": ...}`; successes pass untouched.
    """
    if status < 400:
        return answer
    try:
        decoded = orjson.loads(answer)
    except orjson.JSONDecodeError:
        decoded = None
    if isinstance(decoded, list) or (isinstance(decoded, dict) and "status" in decoded):
        return answer
    error = decoded.get("error") if isinstance(decoded, dict) else None
    if not isinstance(error, dict):
        error = {"code": "internal_error", "message": f"the core answered {status}"}
    return error_envelope(error_from_dict(error, status))


class InstructionConsumer:
    """Consumes one durable queue, `prefetch` instructions at a time, until `stop` is set."""

    def __init__(
        self,
        core: CoreClient,
        settings: InstructionSettings,
        *,
        url: str,
        grace_s: float = 10.0,
    ) -> None:
        self.core = core
        self.settings = settings
        self.url = url
        self.address = address(url, settings.queue)
        self.grace_s = grace_s
        self.started = asyncio.Event()  # set once the queue is being consumed
        self._in_flight: set[asyncio.Task[None]] = set()
        self._answers = RecentAnswers()
        self._lanes = Lanes(settings.generates_per_key)
        self._deferrals = Deferrals(settings.queue, life_s=settings.timeout_s)
        self._later = LaterAnswers(core, self._publish, holder=holder_of(settings))
        self._channel: AbstractRobustChannel | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then let in-flight instructions finish and close.

        Raises `ConnectionError` when RabbitMQ cannot be reached at start; later outages are
        waited out (the connection reconnects by itself and consuming resumes).
        """
        connection = await self._connect()
        sweeping: asyncio.Task[None] | None = None
        try:
            # Answers go out on the channel the requests came in on: once it is restored after
            # an outage, deliveries and publishing resume together.
            self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await self._channel.set_qos(prefetch_count=self.settings.prefetch)
            queue = await self._channel.declare_queue(self.settings.queue, durable=True)
            await self._deferrals.declare(self._channel)
            tag = await queue.consume(self._on_message)
            logger.info("consuming instructions from %s", self.address)
            if self._later.enabled:  # the answers owed from before a restart, and later ones
                sweeping = asyncio.create_task(self._later.sweep_forever())
            self.started.set()
            await stop.wait()
            await self._stop_consuming(queue, tag)
            await self._drain()
            await self._later.close(grace_s=self.grace_s)
        finally:
            if sweeping is not None:
                sweeping.cancel()
            await connection.close()
            logger.info("stopped consuming %s", self.address)

    async def _connect(self) -> AbstractRobustConnection:
        try:
            return await aio_pika.connect_robust(
                self.url,
                timeout=CONNECT_TIMEOUT_S,
                reconnect_interval=RECONNECT_INTERVAL_S,
                client_properties={"connection_name": "patchbay instructions consumer"},
            )
        except (OSError, AMQPError) as exc:
            raise ConnectionError(f"cannot reach RabbitMQ at {self.address}: {exc}") from exc

    async def _stop_consuming(self, queue: AbstractQueue, tag: str) -> None:
        logger.info("stopping: %d instruction(s) in flight", len(self._in_flight))
        with contextlib.suppress(*BROKER_ERRORS):
            await queue.cancel(tag)

    async def _drain(self) -> None:
        """Wait up to the grace period for in-flight instructions; cancel the rest (redelivered)."""
        if not self._in_flight:
            return
        _done, pending = await asyncio.wait(set(self._in_flight), timeout=self.grace_s)
        for task in pending:
            task.cancel()
        if pending:
            logger.warning(
                "%d instruction(s) unfinished after %.0fs; RabbitMQ delivers them again",
                len(pending),
                self.grace_s,
            )
            await asyncio.gather(*pending, return_exceptions=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # A task of our own: a dropped connection cancels aio-pika's delivery tasks, but an
        # instruction the core is running must finish, so its answer is there if it comes again.
        task = asyncio.create_task(self._process(message))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        try:
            await self._handle(message)
        except BROKER_ERRORS as exc:
            logger.warning(
                "instruction %s: RabbitMQ failed mid-answer (%s); it is delivered again",
                _label(message),
                exc,
            )
            await _requeue(message)
        except Exception:  # one bad message must never stop the consumer
            logger.exception("instruction %s failed; answering internal_error", _label(message))
            await self._fail(message)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        if not message.reply_to:
            logger.warning(
                "instruction %s has no reply_to: acknowledged without an answer", _label(message)
            )
            await message.ack()
            return
        kind = generating(message.body)
        if kind is None:
            await self._respond(message)
            return
        started = time.perf_counter()
        try:
            ticket = await self._lanes.enter(_api_key(message)[0])
        except SenderBusy as exc:
            assert self._channel is not None  # noqa: S101 - set before consuming starts
            refused = await self._deferrals.defer(self._channel, message, exc)
            if refused is not None:
                await self._send(message, refused.status, error_envelope(refused), started)
            return
        handed_on = False
        try:
            if kind == GENERATE and self._later.enabled:
                handed_on = await self._owe(message, ticket)
            if not handed_on:
                await self._respond(message)
        finally:
            if not handed_on:
                ticket.release()

    async def _owe(self, message: AbstractIncomingMessage, ticket: Ticket) -> bool:
        """Have the core store a generate with its answer owed here, acknowledge it and follow
        its answer, keeping `ticket` until it went; or send the core's refusal (True, `ticket` done
        with). False: answer it as any instruction (the same id taken by an earlier, different
        instruction), `ticket` still held."""
        started = time.perf_counter()
        asked = self._later.ask(message)
        status, answer = await self._answer(message, owed=asked)
        if status == 202:
            self._later.follow(asked, answer, ticket)
            await message.ack()
            logger.info(
                "instruction %s stored in %.0f ms; its answer follows",
                _label(message),
                (time.perf_counter() - started) * 1000,
            )
            return True
        if status == DuplicateDelivery.status and _code(answer) == DuplicateDelivery.code:
            if not (message.redelivered or put_off(message)):
                return False
            # Stored when it came before (a copy put off, and its original delivered again
            # after a consumer stopped, both come): its answer is owed here already.
            ticket.release()
            self._later.sweep_soon()
            await message.ack()
            logger.info("instruction %s came again: its answer is owed", _label(message))
            return True
        ticket.release()
        await self._send(message, status, answer, started)
        return True

    async def _respond(self, message: AbstractIncomingMessage) -> None:
        """Run the instruction, send its answer and acknowledge it."""
        started = time.perf_counter()
        (status, answer), again = await self._answers.once(message, lambda: self._answer(message))
        if again:
            logger.info("instruction %s came again: sent its earlier answer", _label(message))
        await self._send(message, status, answer, started)

    async def _send(
        self, message: AbstractIncomingMessage, status: int, answer: bytes, started: float
    ) -> None:
        assert message.reply_to is not None  # noqa: S101 - checked by `_handle`
        if len(answer) > MAX_ANSWER_BYTES:
            error = PayloadTooLarge(
                f"the answer is {len(answer)} bytes, more than a RabbitMQ message may hold "
                f"here ({MAX_ANSWER_BYTES}); ask for less (a smaller limit, one chat at a time)"
            )
            status, answer = error.status, error_envelope(error)
        await self._reply(message, message.reply_to, answer)
        await message.ack()
        logger.info(
            "instruction %s answered %d in %.0f ms",
            _label(message),
            status,
            (time.perf_counter() - started) * 1000,
        )

    async def _reply(self, message: AbstractIncomingMessage, reply_to: str, answer: bytes) -> None:
        """Publish the answer to `reply_to` and wait for the broker's confirmation."""
        await self._publish_to(reply_to, message.correlation_id, answer, _label(message))

    async def _publish(self, reply_to: str, correlation_id: str | None, answer: bytes) -> bool:
        """Publish an answer owed here; False while RabbitMQ is away (it stays owed)."""
        label = repr(correlation_id) if correlation_id else "without a correlation id"
        try:
            await self._publish_to(reply_to, correlation_id, answer, label)
        except BROKER_ERRORS as exc:
            logger.warning("instruction %s: RabbitMQ failed (%s); answered later", label, exc)
            return False
        return True

    async def _publish_to(
        self, reply_to: str, correlation_id: str | None, answer: bytes, label: str
    ) -> None:
        if self._channel is None:
            raise ChannelInvalidStateError("not connected to RabbitMQ yet")
        reply = aio_pika.Message(
            answer,
            content_type="application/json",
            correlation_id=correlation_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await self._channel.default_exchange.publish(
                reply, routing_key=reply_to, mandatory=True
            )
        except DeliveryError:  # returned (no such queue) or refused (the queue is full)
            # Sending it again would be refused again: the request would come back for ever.
            logger.warning(
                "instruction %s: its reply queue is gone or refused the answer; it is dropped",
                label,
            )

    async def _fail(self, message: AbstractIncomingMessage) -> None:
        """Answer a message the consumer itself failed on, so it is not delivered forever."""
        error = PatchbayError("the instruction consumer failed on this message; see its log")
        try:
            if message.reply_to:
                await self._reply(message, message.reply_to, error_envelope(error))
            await message.ack()
        except BROKER_ERRORS:
            await _requeue(message)
        except Exception:  # the answer cannot be sent at all (a malformed reply_to)
            logger.exception("instruction %s cannot be answered; dropped", _label(message))
            with contextlib.suppress(*BROKER_ERRORS):
                await message.reject(requeue=False)

    async def _answer(
        self, message: AbstractIncomingMessage, *, owed: OwedStart | None = None
    ) -> tuple[int, bytes]:
        """The core's status and answer; a core that is away is tried again up to `core_retry_s`.
        With `owed`, a generate is answered 202 once stored (see `later.py`)."""
        key, bad_key = _api_key(message)
        if bad_key:
            error = AuthenticationFailed(
                f"the {API_KEY_HEADER!r} header is not a valid API key; send the key as text"
            )
            return error.status, error_envelope(error)
        deadline = time.monotonic() + self.settings.core_retry_s
        delay = FIRST_BACKOFF_S
        while True:
            try:
                status, answer = await self.core.instruct(
                    message.body, key=key, transport="rabbitmq", owed=owed
                )
                return status, as_envelope(status, answer)
            except CoreUnreachable as exc:  # nothing reached the core: safe to try again
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    logger.warning("instruction %s: %s", _label(message), exc.message)
                    return exc.status, error_envelope(exc)
            except CoreUnavailable as exc:  # it broke off: the instruction may have run
                logger.warning("instruction %s: %s", _label(message), exc.message)
                return exc.status, error_envelope(exc)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_BACKOFF_S)


def _api_key(message: AbstractIncomingMessage) -> tuple[str | None, bool]:
    """The sender's key from the `api_key` header, and whether it is unusable as an HTTP header."""
    value = (message.headers or {}).get(API_KEY_HEADER)
    if value is None:
        return None, False
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return None, True
    if not isinstance(value, str) or not (value.isascii() and value.isprintable()):
        return None, True
    return value, False


def _code(answer: bytes) -> object:
    """The error code of the core's error envelope, if it is one."""
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
        return orjson.loads(answer).get("error", {}).get("code")
    return None


def _label(message: AbstractIncomingMessage) -> str:
    """How logs name an instruction: its correlation id, never its body or key."""
    return repr(message.correlation_id) if message.correlation_id else f"#{message.delivery_tag}"


async def _requeue(message: AbstractIncomingMessage) -> None:
    """Hand a message back for another try; on a lost channel RabbitMQ does that by itself."""
    if not message.processed:
        with contextlib.suppress(*BROKER_ERRORS):
            await message.nack(requeue=True)
