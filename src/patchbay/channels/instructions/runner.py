"""`patchbay channel instructions`: the consumer as a process, with heartbeats and signal handling."""

from __future__ import annotations

import asyncio
import signal

from patchbay.channels.heartbeat import beat_forever
from patchbay.channels.instructions.consumer import InstructionConsumer
from patchbay.client import CoreClient
from patchbay.config import Settings
from patchbay.tokens import module_token

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
    # No api_key on this client: each instruction is sent with its own sender's key only. The
    # module token lets the core keep generates' answers owed to this channel.
    secret = settings.installation_secret()
    async with CoreClient(settings.core.base_url, module_token=module_token(secret)) as core:
        consumer = InstructionConsumer(
            core, settings.instructions, url=settings.rabbitmq_url, grace_s=STOP_GRACE_S
        )
        beating = asyncio.create_task(
            beat_forever(
                core,
                module="instructions",
                url=consumer.address,
                secret=secret,
                interval_s=settings.status.heartbeat_interval_s,
            )
        )
        try:
            await consumer.run(stop)
        finally:
            beating.cancel()
