"""The instruction API's client (seed 003): `publish_message(json)` sends one instruction and returns the answer.

`InstructionClient` is the async form: one connection and reply queue, many requests at once,
answers matched to requests by `correlation_id`. Defaults come from `Settings` (the
`PATCHBAY_RABBITMQ_URL`, `PATCHBAY_API_KEY` and `PATCHBAY_INSTRUCTIONS__*` variables).
"""

from __future__ import annotations

import asyncio
import uuid
from types import TracebackType
from typing import Self

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aio_pika.exceptions import AMQPError

from patchbay.channels.instructions import API_KEY_HEADER, DEFAULT_URL, address
from patchbay.config import Settings


def publish_message(
    message: str | bytes,
    *,
    api_key: str | None = None,
    url: str | None = None,
    queue: str | None = None,
    timeout: float | None = None,
) -> str:
    """Send one instruction (or a JSON array of them) and wait for the answer JSON.

    Raises:
        TimeoutError: no answer within `timeout` seconds (default `instructions.timeout_s`).
        ConnectionError: RabbitMQ cannot be reached, or the connection broke before the answer.
        RuntimeError: called inside a running event loop; use `InstructionClient` there.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "publish_message() blocks, so it cannot run inside an event loop; there, use "
            "`async with InstructionClient() as client: await client.request(message)`"
        )
    client = InstructionClient(url, queue=queue, api_key=api_key, timeout=timeout)
    return asyncio.run(_publish_once(client, message))


async def _publish_once(client: InstructionClient, message: str | bytes) -> str:
    try:
        async with asyncio.timeout(client.timeout):
            async with client:
                return await client.request(message)
    except TimeoutError:
        raise TimeoutError(client.timeout_message(client.timeout)) from None


class InstructionClient:
    """One connection to RabbitMQ with its own reply queue; `request()` may run many times at once.

    The connection does not reconnect: when it breaks, requests waiting for an answer raise
    `ConnectionError` (their instruction may or may not have run) and the client is done.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        queue: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        settings: Settings | None = None,
    ) -> None:
        if settings is None and None in (url, queue, api_key, timeout):
            settings = Settings()
        if settings is not None:
            url = url or settings.rabbitmq_url
            queue = queue or settings.instructions.queue
            if api_key is None and settings.api_key is not None:
                api_key = settings.api_key.get_secret_value()
            timeout = settings.instructions.timeout_s if timeout is None else timeout
        self.url: str = url or DEFAULT_URL
        self.queue: str = queue or "patchbay.instructions"
        self.api_key = api_key
        self.timeout: float = 120.0 if timeout is None else timeout
        self.address = address(self.url, self.queue)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._replies: AbstractQueue | None = None
        self._pending: dict[str, asyncio.Future[str]] = {}

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect, declare the instruction queue (durable) and start listening for answers."""
        try:
            self._connection = await aio_pika.connect(
                self.url,
                timeout=self.timeout,
                client_properties={"connection_name": "patchbay instruction client"},
            )
        except (OSError, AMQPError) as exc:
            raise ConnectionError(f"cannot reach RabbitMQ at {self.address}: {exc}") from exc
        try:
            self._channel = await self._connection.channel(publisher_confirms=True)
            await self._channel.declare_queue(self.queue, durable=True)
            self._replies = await self._channel.declare_queue(exclusive=True, auto_delete=True)
            await self._replies.consume(self._on_reply, no_ack=True)
        except BaseException:
            await self._connection.close()
            raise
        self._connection.close_callbacks.add(self._on_close)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def request(self, message: str | bytes, *, api_key: str | None = None) -> str:
        """Send one instruction as a persistent message and wait up to `timeout` for its answer."""
        if self._channel is None or self._replies is None:
            raise RuntimeError("connect() first, or use `async with InstructionClient(...)`")
        body = message.encode() if isinstance(message, str) else message
        key = api_key or self.api_key
        correlation_id = uuid.uuid4().hex
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = answer
        request = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            correlation_id=correlation_id,
            reply_to=self._replies.name,
            expiration=self.timeout,  # not run later, once nobody waits for the answer
            headers={API_KEY_HEADER: key} if key else None,
        )
        try:
            async with asyncio.timeout(self.timeout):
                await self._channel.default_exchange.publish(request, routing_key=self.queue)
                return await answer
        except TimeoutError:
            raise TimeoutError(self.timeout_message(self.timeout)) from None
        finally:
            self._pending.pop(correlation_id, None)

    def timeout_message(self, timeout: float) -> str:
        return (
            f"no answer within {timeout:g}s from the instruction queue {self.address}; "
            "is the consumer running (`patchbay channel instructions`) and the core up?"
        )

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        answer = self._pending.get(message.correlation_id or "")
        if answer is not None and not answer.done():
            answer.set_result(message.body.decode("utf-8", "replace"))

    def _on_close(self, _sender: object, _exc: BaseException | None = None) -> None:
        lost = ConnectionError(
            f"the connection to {self.address} closed before the answer came; "
            "the instruction may or may not have run"
        )
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(lost)
