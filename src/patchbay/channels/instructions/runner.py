"""`patchbay channel instructions`: the consumer as a process, with heartbeats and signal handling."""

from __future__ import annotations

import asyncio
import signal

from patchbay.channels.heartbeat import beat_forever
from patchbay.channels.instructions.consumer import InstructionConsumer
from patchbay.client import CoreClient
from patchbay.config import Settings

STOP_GRACE_S = 10.0


async def serve(settings: Settings) -> None:
    """Consume until SIGTERM or SIGINT; in-flight instructions get `STOP_GRACE_S` to finish.

    Raises `ConnectionError` when RabbitMQ cannot be reached at start.
    """
    if settings.rabbitmq_url is None:
        raise ValueError("rabbitmq_url is not set")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # No api_key on this client: each instruction is sent with its own sender's key only.
    async with CoreClient(settings.core.base_url) as core:
        consumer = InstructionConsumer(
            core, settings.instructions, url=settings.rabbitmq_url, grace_s=STOP_GRACE_S
        )
        beating = asyncio.create_task(
            beat_forever(
                core,
                module="instructions",
                url=consumer.address,
                secret=settings.installation_secret(),
                interval_s=settings.status.heartbeat_interval_s,
            )
        )
        try:
            await consumer.run(stop)
        finally:
            beating.cancel()
