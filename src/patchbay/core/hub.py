"""The hub: every core service wired together, built once per core process from Settings."""

from __future__ import annotations

import asyncio
import logging

from patchbay.config import Settings, environment
from patchbay.core.assistants import AssistantService
from patchbay.core.attachments import AttachmentStore
from patchbay.core.catalog import Catalog
from patchbay.core.chats import ChatService
from patchbay.core.deliveries import DeliveryService
from patchbay.core.helpers import HelperRegistry
from patchbay.core.instructions.executor import InstructionExecutor
from patchbay.core.instructions.handlers import Handlers
from patchbay.core.jobs import JobRunner
from patchbay.core.keys import SecretBox
from patchbay.core.llm.registry import ModelRegistry
from patchbay.core.senders import SenderService
from patchbay.core.status import StatusBoard
from patchbay.core.turns import TurnEngine
from patchbay.core.users import Authenticator, Bootstrap, UserService, bootstrap_admin
from patchbay.queue.memory import MemoryEventBus, MemoryQueue
from patchbay.queue.rabbitmq import RabbitBroker, RabbitEventBus, RabbitQueue
from patchbay.store.db import Database

logger = logging.getLogger(__name__)


def rabbit_ports(
    broker: RabbitBroker, settings: Settings, *, follow: bool
) -> tuple[RabbitQueue, RabbitEventBus]:
    """The RabbitMQ queue and event bus; `follow`: this process serves listeners (a core)."""
    jobs = settings.jobs
    queue = RabbitQueue(
        broker, queue_name=jobs.queue_name, max_depth=jobs.max_depth, concurrency=jobs.concurrency
    )
    bus = RabbitEventBus(
        broker,
        retention_s=jobs.event_retention_s,
        max_finished=jobs.event_retention_max,
        follow=follow,
    )
    return queue, bus


class Hub:
    def __init__(self, settings: Settings, *, db: Database | None = None) -> None:
        self.settings = settings
        self.db = db or Database(settings.resolved_database_url)
        self.secret = settings.installation_secret()
        self.auth = Authenticator(self.db)
        self.users = UserService(self.db, self.auth)
        self.catalog = Catalog(self.db, SecretBox(self.secret), environment())
        self.status = StatusBoard(down_after_s=settings.status.down_after_s)
        self.chats = ChatService(self.db)
        self.registry = ModelRegistry(settings)
        self.broker: RabbitBroker | None = None
        self.queue: MemoryQueue | RabbitQueue
        self.bus: MemoryEventBus | RabbitEventBus
        if settings.queue == "rabbitmq" and settings.rabbitmq_url:
            # Workers run the jobs; this core queues them and follows their events.
            self.broker = RabbitBroker(settings.rabbitmq_url, prefix=settings.jobs.exchange_prefix)
            self.queue, self.bus = rabbit_ports(self.broker, settings, follow=True)
        else:
            self.queue = MemoryQueue(
                concurrency=settings.jobs.concurrency, max_depth=settings.jobs.max_depth
            )
            self.bus = MemoryEventBus(
                retention_s=settings.jobs.event_retention_s,
                max_finished=settings.jobs.event_retention_max,
            )
        self._warmup: asyncio.Task[None] | None = None
        self._mcp_pinger: asyncio.Task[None] | None = None
        self.helpers = HelperRegistry(
            self.db,
            settings.helpers,
            key=settings.helpers.key(self.secret),
            down_after_s=settings.status.down_after_s,
        )
        self.jobs = JobRunner(
            db=self.db,
            catalog=self.catalog,
            registry=self.registry,
            bus=self.bus,
            settings=settings.jobs,
            helpers=self.helpers,
            exclusive=isinstance(self.queue, MemoryQueue),
        )
        self.assistants = AssistantService(self.db)
        self.senders = SenderService(self.db)
        self.deliveries = DeliveryService(self.db)
        self.attachments = AttachmentStore(
            settings.data_dir / "files", self.helpers, max_bytes=settings.helpers.max_request_bytes
        )
        self.turns = TurnEngine(
            db=self.db,
            catalog=self.catalog,
            queue=self.queue,
            jobs=self.jobs,
            registry=self.registry,
            assistants=self.assistants,
            attachments=self.attachments,
            settings=settings.jobs,
        )
        handlers = Handlers(
            users=self.users,
            chats=self.chats,
            catalog=self.catalog,
            turns=self.turns,
            jobs=self.jobs,
        )
        self.instructions = InstructionExecutor(handlers, self.users)

    async def prepare(self) -> Bootstrap | None:
        """Migrate the database and create the first admin; safe to run on every start."""
        await self.db.migrate()
        admin_key = self.settings.admin_key
        bootstrap = await bootstrap_admin(
            self.db, admin_key=admin_key.get_secret_value() if admin_key else None
        )
        if self.settings.local_model.enabled:
            await self.catalog.ensure_local(self.settings.local_model.name)
        return bootstrap

    async def start(self) -> None:
        self._mcp_pinger = asyncio.create_task(self._ping_mcp_forever())
        if isinstance(self.queue, RabbitQueue) and isinstance(self.bus, RabbitEventBus):
            await self.queue.open()
            await self.bus.open()
            await self.turns.waiting.resume()  # those whose core stopped while they waited
            return
        await self.registry.start()
        await self.jobs.recover(self.queue.name)
        await self.queue.start(self.jobs.run, self.jobs.request_cancel)
        if self.settings.local_model.enabled:
            self._warmup = asyncio.create_task(self._warm_local_model())

    async def _ping_mcp_forever(self) -> None:
        """MCP servers send no heartbeats: ask them, so their state is known."""
        while True:
            await asyncio.sleep(self.settings.status.heartbeat_interval_s)
            try:
                await self.helpers.ping_mcp()
            except Exception:
                logger.exception("could not check the MCP helpers")

    async def _warm_local_model(self) -> None:
        """Load the embedded model in the background, so the first turn does not wait for it."""
        try:
            await self.registry.local_engine(self.settings.local_model.name)
        except Exception:
            logger.exception("the embedded model could not be loaded")

    async def close(self) -> None:
        if self._warmup is not None:
            self._warmup.cancel()
        if self._mcp_pinger is not None:
            self._mcp_pinger.cancel()
        await self.turns.waiting.close()
        await self.queue.close(grace_s=10)
        await self.registry.close()
        await self.helpers.close()
        if self.broker is not None:
            await self.broker.close()
        await self.db.close()
