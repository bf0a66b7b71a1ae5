"""RabbitMQ queue and event bus: jobs in a durable queue that workers consume, events on a topic
exchange that every core process follows.

A worker acknowledges a job only once its outcome is stored; one that dies leaves it
unacknowledged and RabbitMQ delivers it to another worker. The queue's maximum depth is enforced
by the broker (`x-max-length` with `reject-publish`), so it holds across every core process.
Cancellations go to every worker on a fanout exchange; the one running the job stops it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import secrets
import time
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import (
    AMQPError,
    ChannelPreconditionFailed,
    DeliveryError,
    PublishError,
)
from pydantic import TypeAdapter

from patchbay.errors import QueueFull, ServiceUnavailable
from patchbay.queue.base import CancelHook, JobHandler, JobSpec, PromptFile, PromptMessage
from patchbay.queue.memory import MemoryEventBus
from patchbay.schemas.jobs import JobEvent

EVENTS: TypeAdapter[list[JobEvent]] = TypeAdapter(list[JobEvent])

logger = logging.getLogger(__name__)

DEPTH_POLL_S = 1.0
FOLLOWER_EXPIRES_S = 60.0  # how long a core's event queue waits for it to reconnect
PUBLISH_RETRY_S = 30.0  # how long a worker keeps events it cannot publish
PUBLISH_RETRY_INTERVAL_S = 0.5


def encode_job(job: JobSpec) -> bytes:
    return orjson.dumps(dataclasses.asdict(job), default=_json_default)


def _json_default(value: object) -> object:
    if isinstance(value, bytes):  # a file the model reads itself
        return base64.b64encode(value).decode()
    if isinstance(value, tuple):  # a PromptMessage (orjson writes only plain tuples)
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def decode_job(body: bytes) -> JobSpec:
    """The job in a message body; `ValueError`, `TypeError` or `KeyError` for anything else."""
    data: dict[str, Any] = orjson.loads(body)
    if not isinstance(data["messages"], list):
        raise TypeError("a job's messages are a list")
    data["messages"] = tuple(_message(item) for item in data["messages"])
    job = JobSpec(**data)
    if not isinstance(job.job_id, str):
        raise TypeError("a job's id is a string")
    return job


def _message(item: list[Any]) -> PromptMessage:
    # Jobs queued before messages carried files are [role, text].
    role, text, *rest = item
    files = rest[0] if rest else []
    return PromptMessage(
        role,
        text,
        tuple(PromptFile(f["media_type"], base64.b64decode(f["data"]), f["text"]) for f in files),
    )


class RabbitBroker:
    """One robust connection per process, shared by the queue, the bus and the control channel."""

    def __init__(self, url: str, *, prefix: str = "patchbay") -> None:
        self.url = url
        self.prefix = prefix
        self.connection: AbstractRobustConnection | None = None

    async def connect(self) -> AbstractRobustConnection:
        if self.connection is None:
            try:
                self.connection = await aio_pika.connect_robust(self.url, timeout=10)
            except (OSError, AMQPError) as exc:
                raise ServiceUnavailable(f"RabbitMQ is not reachable: {exc}") from exc
        return self.connection

    async def channel(
        self, *, confirms: bool = True, return_raises: bool = False
    ) -> AbstractRobustChannel:
        connection = await self.connect()
        return await connection.channel(publisher_confirms=confirms, on_return_raises=return_raises)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
            self.connection = None


class RabbitQueue:
    """Jobs in a durable RabbitMQ queue; `start` makes this process a worker."""

    name = "rabbitmq"

    def __init__(
        self, broker: RabbitBroker, *, queue_name: str, max_depth: int, concurrency: int
    ) -> None:
        self._broker = broker
        self._queue_name = queue_name
        self._max_depth = max_depth
        self._concurrency = concurrency
        self._depth = 0
        self._channel: AbstractRobustChannel | None = None
        self._control: AbstractExchange | None = None
        self._consumer: tuple[AbstractQueue, str] | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._deliveries: dict[str, AbstractIncomingMessage] = {}
        self._on_cancel: CancelHook | None = None
        self._poller: asyncio.Task[None] | None = None
        self._closing = False

    async def open(self) -> None:
        # Returned messages raise: a cancel that no worker is bound to hear reaches nobody.
        self._channel = await self._broker.channel(return_raises=True)
        await self._declare(self._channel)
        self._control = await self._channel.declare_exchange(
            f"{self._broker.prefix}.control", aio_pika.ExchangeType.FANOUT, durable=True
        )
        self._poller = asyncio.create_task(self._poll_depth())

    async def _declare(self, channel: AbstractRobustChannel) -> AbstractQueue:
        arguments: dict[str, Any] = {
            "x-max-length": self._max_depth,
            "x-overflow": "reject-publish",
        }
        try:
            # on a channel of its own: RabbitMQ closes the channel of a declare it refuses
            async with await self._broker.channel(confirms=False) as probe:
                await probe.declare_queue(self._queue_name, durable=True, arguments=arguments)
        except ChannelPreconditionFailed:  # made by an earlier run with another max_depth
            logger.warning(
                "the job queue %s keeps the maximum depth it was made with, not %d; to change "
                "it, delete the queue while it is empty (rabbitmqctl delete_queue %s)",
                self._queue_name,
                self._max_depth,
                self._queue_name,
            )
            return await channel.declare_queue(self._queue_name, passive=True)
        return await channel.declare_queue(self._queue_name, durable=True, arguments=arguments)

    async def _poll_depth(self) -> None:
        """Keep `depth()` (the queue's length, for positions and early refusals) roughly current."""
        while True:
            with contextlib.suppress(AMQPError, OSError, RuntimeError):
                assert self._channel is not None  # noqa: S101 - opened first
                # the raw channel: aio-pika's robust one answers a redeclare from its cache
                raw = await self._channel.get_underlay_channel()
                declared = await raw.queue_declare(self._queue_name, passive=True)
                self._depth = declared.message_count or 0
            await asyncio.sleep(DEPTH_POLL_S)

    def depth(self) -> int:
        return self._depth

    async def submit(self, job: JobSpec) -> None:
        if self._channel is None:
            raise ServiceUnavailable("the job queue is not open yet; try again shortly")
        message = aio_pika.Message(
            encode_job(job),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/json",
            message_id=job.job_id,
        )
        try:
            await self._channel.default_exchange.publish(message, routing_key=self._queue_name)
        except PublishError as exc:  # returned: the queue is not there (deleted by hand)
            raise ServiceUnavailable(f"the job queue {self._queue_name!r} is gone: {exc}") from exc
        except DeliveryError as exc:  # the broker refused it: the queue is at its maximum
            raise QueueFull(f"{self._max_depth} jobs are waiting; try again shortly") from exc
        except (AMQPError, OSError, RuntimeError) as exc:
            raise ServiceUnavailable(f"RabbitMQ did not take the job: {exc}") from exc
        self._depth += 1

    async def start(self, handler: JobHandler, on_cancel: CancelHook | None = None) -> None:
        self._on_cancel = on_cancel
        channel = await self._broker.channel(confirms=False)
        channel.close_callbacks.add(self._lost)
        await channel.set_qos(prefetch_count=self._concurrency)
        queue = await self._declare(channel)

        async def deliver(message: AbstractIncomingMessage) -> None:
            await self._deliver(handler, message)

        self._consumer = (queue, await queue.consume(deliver, no_ack=False))
        control = await channel.declare_queue(exclusive=True, auto_delete=True)
        await control.bind(f"{self._broker.prefix}.control")
        await control.consume(self._on_control, no_ack=True)

    def _lost(self, _channel: object, _reason: BaseException | None) -> None:
        """The channel the jobs came on closed (its connection was lost): RabbitMQ hands them
        to another worker, so they stop here (a job runs in one worker at a time)."""
        if self._closing:
            return
        for job_id, task in list(self._tasks.items()):
            logger.warning(
                "job %s: lost the connection to RabbitMQ; left to another worker", job_id
            )
            task.cancel()

    async def _deliver(self, handler: JobHandler, message: AbstractIncomingMessage) -> None:
        try:
            job = decode_job(message.body)
        except (ValueError, TypeError, KeyError) as exc:  # bad JSON, base64, or shape
            logger.error("dropping a job message that is not a job: %s", exc)
            await message.reject(requeue=False)
            return
        self._deliveries[job.job_id] = message  # a redelivery of a job running here replaces it
        if job.job_id in self._tasks:
            return
        task = asyncio.create_task(self._run(handler, job), name=f"job-{job.job_id}")
        self._tasks[job.job_id] = task

    async def _run(self, handler: JobHandler, job: JobSpec) -> None:
        done = False
        try:
            await handler(job)
            done = True
        except asyncio.CancelledError:
            pass  # shutting down: leave it to another worker
        except Exception:
            logger.exception("job %s crashed its handler", job.job_id)
            done = True  # its outcome is stored as failed; running it again would fail again
        finally:
            self._tasks.pop(job.job_id, None)
            message = self._deliveries.pop(job.job_id, None)
            if message is not None:
                with contextlib.suppress(AMQPError, RuntimeError):
                    await (message.ack() if done else message.nack(requeue=True))

    async def _on_control(self, message: AbstractIncomingMessage) -> None:
        with contextlib.suppress(orjson.JSONDecodeError, TypeError, KeyError):
            command = orjson.loads(message.body)
            if isinstance(command, dict) and command.get("cancel"):
                self._cancel_here(str(command["cancel"]))

    def _cancel_here(self, job_id: str) -> bool:
        task = self._tasks.get(job_id)
        if task is None or task.done():
            return False
        if self._on_cancel is not None:
            self._on_cancel(job_id)
        task.cancel()
        return True

    async def cancel(self, job_id: str) -> bool:
        """Cancel here if this process runs the job, else tell every worker; False when no
        worker is up to hear it (one that died left the job to whoever starts next)."""
        if self._cancel_here(job_id):
            return True
        if self._control is None:
            return False
        body = orjson.dumps({"cancel": job_id})
        try:
            await self._control.publish(aio_pika.Message(body), routing_key="", mandatory=True)
        except PublishError:  # returned: no worker's control queue is bound
            return False
        except (AMQPError, OSError, RuntimeError) as exc:
            raise ServiceUnavailable(f"RabbitMQ did not take the cancel: {exc}") from exc
        return True

    async def close(self, grace_s: float) -> None:
        self._closing = True
        if self._poller is not None:
            self._poller.cancel()
        if self._consumer is not None:
            queue, tag = self._consumer
            with contextlib.suppress(AMQPError, RuntimeError):
                await queue.cancel(tag)
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks.values()), timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)


class RabbitEventBus(MemoryEventBus):
    """Events go out on a topic exchange; a process that serves listeners (`follow=True`, the
    core) takes every event into its in-memory log, where listeners replay and follow them as
    with the in-process bus.

    The events published in one turn of the event loop (the tokens of every job this worker
    runs) go out as one message, a JSON list, in order: a message per token would cost the
    worker, the broker and every core far more than the token itself.
    """

    def __init__(
        self, broker: RabbitBroker, *, retention_s: float, max_finished: int, follow: bool
    ) -> None:
        super().__init__(retention_s=retention_s, max_finished=max_finished)
        self._broker = broker
        self._follow = follow
        self._exchange: AbstractExchange | None = None
        self._outbox: list[bytes] = []
        self._flushing: asyncio.Task[None] | None = None

    async def open(self) -> None:
        channel = await self._broker.channel(confirms=False)
        self._exchange = await channel.declare_exchange(
            f"{self._broker.prefix}.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        if self._follow:
            # A queue of this process's own that outlives its connection (an exclusive one
            # dies with it) by `FOLLOWER_EXPIRES_S`: events published while the connection is
            # down (a network blip, a failover) wait there, so a job that ends meanwhile still
            # ends for its listeners. Durable: RabbitMQ 4 deprecates transient shared queues.
            queue = await channel.declare_queue(
                f"{self._broker.prefix}.events.{secrets.token_hex(8)}",
                durable=True,
                arguments={"x-expires": int(FOLLOWER_EXPIRES_S * 1000)},
            )
            await queue.bind(self._exchange, routing_key="#")
            await queue.consume(self._on_events, no_ack=False)

    async def _on_events(self, message: AbstractIncomingMessage) -> None:
        try:
            events = EVENTS.validate_json(message.body)
        except ValueError:
            logger.warning("ignoring a message that is not a list of job events")
            events = []
        for event in events:
            await super().publish(event)  # one seen already (delivered again) is dropped
        # An ack lost with its connection is no loss: the message comes again, and is dropped.
        with contextlib.suppress(AMQPError, RuntimeError):
            await message.ack()

    async def publish(self, event: JobEvent) -> None:
        if self._follow:
            await super().publish(event)  # listeners here see it at once; the echo is dropped
        if self._exchange is None:
            raise ServiceUnavailable("the event bus is not open yet")
        self._outbox.append(event.model_dump_json(exclude_none=True).encode())
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        if event.terminal:  # the end of a job waits until it is on its way
            await asyncio.shield(self._flushing)

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let this loop turn's other events join the message
        failing_since: float | None = None
        while self._outbox:
            batch, self._outbox = self._outbox, []
            body = b"[" + b",".join(batch) + b"]"
            assert self._exchange is not None  # noqa: S101 - checked by publish
            try:
                # not mandatory: with no core following, the events have nobody to go to
                await self._exchange.publish(
                    aio_pika.Message(body), routing_key="events", mandatory=False
                )
                failing_since = None
            except (AMQPError, OSError, RuntimeError) as exc:
                # The connection reconnects by itself: keep the events (a lost `done` would
                # leave the job's listeners waiting for ever) until it is back, or give up.
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since >= PUBLISH_RETRY_S:
                    logger.warning("%d events not published: %s", len(batch), exc)
                    continue
                self._outbox = batch + self._outbox
                await asyncio.sleep(PUBLISH_RETRY_INTERVAL_S)
