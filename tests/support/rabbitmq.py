"""The RabbitMQ on 127.0.0.1:5672 for integration tests: throwaway queues and a consumer in a thread.

Where RabbitMQ is missing the tests skip with the reason, except under CI (`CI` set), where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import aio_pika
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import AMQPError

from patchbay.channels.instructions.consumer import InstructionConsumer
from patchbay.client import CoreClient
from patchbay.config import InstructionSettings
from patchbay.tokens import module_token
from tests.support.databases import require_service

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
TEST_SECRET = "test-secret"  # make_settings's secret_key, which the module token is made from


def require_rabbitmq() -> None:
    async def probe() -> None:
        connection = await aio_pika.connect(RABBITMQ_URL, timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, AMQPError, TimeoutError) as exc:
        require_service("RabbitMQ on 127.0.0.1:5672", exc)


def unique_queue_name() -> str:
    return f"patchbay.instructions.test-{secrets.token_hex(6)}"


@asynccontextmanager
async def amqp_channel() -> AsyncIterator[AbstractChannel]:
    """A fresh connection and channel (publisher confirms on), closed afterwards."""
    connection = await aio_pika.connect(RABBITMQ_URL, timeout=10)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def queue_depth(name: str) -> int:
    """How many messages wait, ready, in the queue (unacknowledged ones are not counted)."""
    async with amqp_channel() as channel:
        queue = await channel.declare_queue(name, passive=True)
        count = queue.declaration_result.message_count
        return int(count or 0)


def delete_queues(*names: str) -> None:
    """Delete the queues, and the deferral queue a consumer of each declared (if any)."""

    async def delete() -> None:
        async with amqp_channel() as channel:
            for name in names:
                await channel.queue_delete(name)
                await channel.queue_delete(f"{name}.deferred")

    asyncio.run(delete())


def rabbitmqctl(*args: str) -> None:
    binary = shutil.which("rabbitmqctl")
    if binary is None:
        require_service("rabbitmqctl", FileNotFoundError("rabbitmqctl is not on PATH"))
        return
    subprocess.run([binary, *args], check=True, capture_output=True, timeout=60)


class ConsumerThread:
    """An `InstructionConsumer` on its own event loop in a thread, as the channel process runs it."""

    def __init__(
        self,
        settings: InstructionSettings,
        *,
        core_url: str,
        grace_s: float = 10.0,
        secret: str | None = TEST_SECRET,
    ):
        self.settings = settings
        self.module_token = None if secret is None else module_token(secret)
        self.core_url = core_url
        self.grace_s = grace_s
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self, timeout_s: float = 15.0) -> None:
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise TimeoutError(f"the consumer did not start within {timeout_s}s")
        if self.error is not None:
            raise RuntimeError("the consumer did not start") from self.error

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the consumer did not stop"

    def _main(self) -> None:
        try:
            self._loop.run_until_complete(self._run())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc
        finally:
            self._started.set()
            self._loop.close()

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        async with CoreClient(self.core_url, module_token=self.module_token) as core:
            consumer = InstructionConsumer(
                core, self.settings, url=RABBITMQ_URL, grace_s=self.grace_s
            )
            started = asyncio.create_task(consumer.started.wait())
            started.add_done_callback(lambda _: self._started.set())
            try:
                await consumer.run(self._stop)
            finally:
                started.cancel()


@contextmanager
def consuming(
    settings: InstructionSettings,
    *,
    core_url: str,
    grace_s: float = 10.0,
    secret: str | None = TEST_SECRET,
) -> Iterator[ConsumerThread]:
    consumer = ConsumerThread(settings, core_url=core_url, grace_s=grace_s, secret=secret)
    consumer.start()
    try:
        yield consumer
    finally:
        consumer.stop()
    if consumer.error is not None:
        raise consumer.error
