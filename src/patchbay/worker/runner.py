"""`patchbay worker`: take jobs from RabbitMQ, run them, store their outcome, publish their events.

A worker holds no state of its own: the job message carries its context and the database its
result. On SIGTERM it stops taking jobs and lets running ones finish within the grace period;
what is left is handed back to RabbitMQ (not acknowledged), and another worker starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from datetime import UTC, datetime

from patchbay import heap
from patchbay.client import CoreClient
from patchbay.config import Settings, environment
from patchbay.core.catalog import Catalog
from patchbay.core.helpers import HelperRegistry
from patchbay.core.hub import rabbit_ports
from patchbay.core.jobs import JobRunner
from patchbay.core.keys import SecretBox
from patchbay.core.llm.registry import ModelRegistry
from patchbay.errors import PatchbayError
from patchbay.queue.rabbitmq import RabbitBroker
from patchbay.schemas.status import Heartbeat
from patchbay.store.db import Database
from patchbay.tokens import module_token

logger = logging.getLogger(__name__)


class Worker:
    def __init__(self, settings: Settings, *, name: str = "worker") -> None:
        if settings.rabbitmq_url is None:
            raise PatchbayError("a worker needs RabbitMQ: set PATCHBAY_RABBITMQ_URL")
        self.settings = settings
        self.name = name
        self.db = Database(settings.resolved_database_url)
        secret = settings.installation_secret()
        self.secret = secret
        self.catalog = Catalog(self.db, SecretBox(secret), environment())
        self.registry = ModelRegistry(settings)
        self.broker = RabbitBroker(settings.rabbitmq_url, prefix=settings.jobs.exchange_prefix)
        self.queue, self.bus = rabbit_ports(self.broker, settings, follow=False)
        self.helpers = HelperRegistry(
            self.db,
            settings.helpers,
            key=settings.helpers.key(secret),
            down_after_s=settings.status.down_after_s,
        )
        self.jobs = JobRunner(
            db=self.db,
            catalog=self.catalog,
            registry=self.registry,
            bus=self.bus,
            settings=settings.jobs,
            helpers=self.helpers,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then hand back what is still running after the grace."""
        await self.registry.start()
        await self.queue.open()
        await self.bus.open()
        await self.queue.start(self.jobs.run, self.jobs.request_cancel)
        logger.info("worker %s takes jobs from %s", self.name, self.settings.jobs.queue_name)
        beats = asyncio.create_task(self._beat())
        try:
            await stop.wait()
        finally:
            beats.cancel()
            logger.info("worker %s stopping", self.name)
            await self.queue.close(grace_s=self.settings.jobs.stop_grace_s)
            await self.registry.close()
            await self.helpers.close()
            await self.broker.close()
            await self.db.close()

    async def _beat(self) -> None:
        beat = Heartbeat(
            module=self.name,
            kind="worker",
            url=f"pid {os.getpid()}",
            pid=os.getpid(),
            started_at=datetime.now(UTC),
        )
        token = module_token(self.secret)
        async with CoreClient(self.settings.core.base_url) as core:
            while True:
                with contextlib.suppress(PatchbayError):
                    await core.heartbeat(beat, token=token)
                await asyncio.sleep(self.settings.status.heartbeat_interval_s)


def run_worker(settings: Settings, *, name: str) -> None:
    """Run a worker in this process until SIGTERM or SIGINT."""

    async def main() -> None:
        heap.settle()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await Worker(settings, name=name).run(stop)

    asyncio.run(main())
