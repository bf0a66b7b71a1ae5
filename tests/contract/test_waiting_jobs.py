"""Waiting turns against each store: what their jobs run with when any core queues them, and how a
release the queue refuses waits, in the store, to be tried again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Connection

from patchbay.backoff import Backoff
from patchbay.core import waiting
from patchbay.core.hub import Hub
from patchbay.core.turns import TurnEngine
from patchbay.errors import ChatNotFound, QueueFull
from patchbay.queue.base import JobSpec, PromptMessage
from patchbay.schemas.jobs import JobEvent, JobRead
from patchbay.schemas.options import GenerationOptions
from patchbay.schemas.turns import TurnCreate, TurnRead
from patchbay.schemas.users import UserRead
from patchbay.store import tables
from tests.conftest import make_settings
from tests.contract.test_store import add_echo, admin
from tests.support.databases import postgres_url

OPTIONS = GenerationOptions(temperature=0.3, max_tokens=7)
T = TypeVar("T")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def started(backend: str, tmp_path: Path, **jobs: object) -> AsyncIterator[Hub]:
    async with AsyncExitStack() as stack:
        overrides: dict[str, object] = {"jobs": jobs}
        if backend == "postgresql":
            overrides["database_url"] = await stack.enter_async_context(postgres_url())
        hub = Hub(make_settings(tmp_path, **overrides))
        await hub.prepare()
        await hub.start()
        try:
            await add_echo(hub)
            yield hub
        finally:
            await hub.close()


@pytest.fixture
async def hub(backend: str, tmp_path: Path) -> AsyncIterator[Hub]:
    async with started(backend, tmp_path) as running:
        yield running


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "RELEASE_RETRY", Backoff(0.05, cap_s=0.05))
    monkeypatch.setattr(waiting, "RESUME_GRACE_S", 0.0)


class Gate:
    """Stands before the hub's queue: keeps the jobs it is told to hold (run when let go), and
    refuses every job while `full`."""

    def __init__(self, hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
        self._submit = hub.queue.submit
        self.holding = False
        self.full = False
        self.held: dict[str, JobSpec] = {}
        self.queued: dict[str, JobSpec] = {}
        self.refused: list[str] = []
        self.before: Callable[[JobSpec], object] | None = None
        monkeypatch.setattr(hub.queue, "submit", self)

    async def __call__(self, spec: JobSpec) -> None:
        if self.full:
            self.refused.append(spec.job_id)
            raise QueueFull("1 jobs are waiting; try again shortly")
        if self.holding:
            self.held[spec.job_id] = spec
            return
        if self.before is not None:
            await self.before(spec)  # type: ignore[misc]
        self.queued[spec.job_id] = spec
        await self._submit(spec)

    async def let_go(self, job_id: str) -> None:
        await self._submit(self.held.pop(job_id))


async def one_behind_another(
    hub: Hub, user: UserRead, gate: Gate, *, core: TurnEngine | None = None
) -> tuple[TurnRead, TurnRead]:
    """A turn whose job is held, and one sent behind it meanwhile, with options, unstreamed (to
    the hub's core, or to `core`)."""
    turns = core or hub.turns
    gate.holding = True
    turn = TurnCreate(text="one", channel="test", thread="t1")
    first = await turns.start(user, turn)
    behind = {"text": "two", "queue_behind": True, "stream": False, "options": OPTIONS}
    second = await turns.start(user, turn.model_copy(update=behind))
    assert await status(hub, user, second.job_id) == "waiting"
    gate.holding = False
    return first, second


async def status(hub: Hub, user: UserRead, job_id: str) -> str:
    return (await hub.jobs.job(user, job_id)).status


async def until(check: Callable[[], object], timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("it did not happen in time")


async def ended(hub: Hub, job_id: str) -> JobEvent:
    return await asyncio.wait_for(hub.jobs.outcome(job_id), 10)


async def refused_once_ahead_ended(hub: Hub, user: UserRead, gate: Gate) -> TurnRead:
    """A waiting turn whose release the full queue refused; its chat's answer ahead is done."""
    first, second = await one_behind_another(hub, user, gate)
    gate.full = True
    await gate.let_go(first.job_id)
    assert (await ended(hub, first.job_id)).type == "done"
    await until(lambda: second.job_id in gate.refused)
    return second


async def test_a_waiting_job_runs_with_its_turns_options_when_another_core_queues_it(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await admin(hub)
    gate = Gate(hub, monkeypatch)
    first, second = await one_behind_another(hub, user, gate)
    await hub.turns.waiting.close()  # the core that stored it stops
    await gate.let_go(first.job_id)
    assert (await ended(hub, first.job_id)).type == "done"
    await hub.turns.waiting.resume()  # as a core that starts on RabbitMQ
    assert (await ended(hub, second.job_id)).type == "done"
    spec = gate.queued[second.job_id]
    assert spec.options == {"temperature": 0.3, "max_tokens": 7}  # it ran with the model's own
    assert spec.stream is False
    assert spec.messages[-1] == PromptMessage("user", "two")
    async with hub.db.connect() as conn:
        kept = (await conn.execute(select(tables.jobs.c.options, tables.jobs.c.stream))).all()
    assert sorted(kept, key=str) == sorted(
        [(None, None), ({"temperature": 0.3, "max_tokens": 7}, False)], key=str
    )  # a turn that does not wait stores nothing more


async def test_a_waiting_turn_the_full_queue_refuses_waits_again_until_it_fits(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await admin(hub)
    gate = Gate(hub, monkeypatch)
    second = await refused_once_ahead_ended(hub, user, gate)
    # it was failed, though its turn had been accepted
    assert await status(hub, user, second.job_id) in ("waiting", "queued")
    await until(lambda: len(gate.refused) >= 3)  # tried again, and again
    gate.full = False
    assert (await ended(hub, second.job_id)).type == "done"
    assert gate.queued[second.job_id].options == {"temperature": 0.3, "max_tokens": 7}
    messages = await hub.chats.messages(user, second.chat_id)
    assert [(m.role, m.status) for m in messages][-2:] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]


async def test_a_waiting_turn_cancelled_while_the_queue_is_full_is_never_queued(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await admin(hub)
    gate = Gate(hub, monkeypatch)
    second = await refused_once_ahead_ended(hub, user, gate)
    cancelled = await hub.turns.cancel(user, second.job_id)
    assert cancelled.status == "cancelled"  # it had failed already
    gate.full = False
    await asyncio.sleep(0.3)  # tried again meanwhile, were it still waiting
    assert second.job_id not in gate.queued
    assert await status(hub, user, second.job_id) == "cancelled"
    assert (await ended(hub, second.job_id)).type == "cancelled"


async def test_a_listener_of_a_waiting_turn_deleted_with_its_chat_while_the_queue_is_full_hears_it_end(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await admin(hub)
    gate = Gate(hub, monkeypatch)
    second = await refused_once_ahead_ended(hub, user, gate)
    await hub.chats.delete(user, second.chat_id)
    outcome = await ended(hub, second.job_id)
    assert outcome.type == "failed"
    assert outcome.error is not None and outcome.error.code == ChatNotFound.code
    assert second.job_id not in gate.queued


async def test_a_core_stopping_while_the_queue_is_full_leaves_the_turn_to_the_next(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await admin(hub)
    gate = Gate(hub, monkeypatch)
    second = await refused_once_ahead_ended(hub, user, gate)
    await hub.turns.waiting.close()
    assert await status(hub, user, second.job_id) == "waiting"  # neither failed nor lost
    gate.full = False
    await hub.turns.waiting.resume()
    assert (await ended(hub, second.job_id)).type == "done"


async def test_a_waiting_turn_the_queue_keeps_refusing_fails_saying_why(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with started(backend, tmp_path, release_retry_s=0.3) as hub:
        user = await admin(hub)
        gate = Gate(hub, monkeypatch)
        second = await refused_once_ahead_ended(hub, user, gate)
        outcome = await ended(hub, second.job_id)
        reason = (
            "could not queue it for 0.3 s after the answer before it ended: "
            "1 jobs are waiting; try again shortly"
        )
        assert outcome.type == "failed" and outcome.error is not None
        assert (outcome.error.code, outcome.error.message) == (QueueFull.code, reason)
        assert outcome.error.retryable
        job = await hub.jobs.job(user, second.job_id)
        assert (job.status, job.error) == ("failed", reason)
        answer = (await hub.chats.messages(user, second.chat_id))[-1]
        assert (answer.status, answer.error) == ("failed", reason)
        assert second.job_id not in gate.queued


async def test_a_waiting_turn_cancelled_as_it_is_queued_does_not_run(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await admin(hub)
    gate = Gate(hub, monkeypatch)
    first, second = await one_behind_another(hub, user, gate)
    write = hub.db.write
    cancels: list[asyncio.Task[JobRead]] = []

    async def then_cancel(op: Callable[[Connection], T]) -> T:
        """Once the job is marked queued, and before it is queued, its owner cancels it."""
        done = await write(op)
        if not cancels and await status(hub, user, second.job_id) == "queued":
            cancels.append(asyncio.create_task(hub.turns.cancel(user, second.job_id)))
            for _ in range(500):
                if await status(hub, user, second.job_id) == "cancelled":
                    break
                await asyncio.sleep(0.01)
        return done

    monkeypatch.setattr(hub.db, "write", then_cancel)
    await gate.let_go(first.job_id)
    assert (await ended(hub, second.job_id)).type == "cancelled"
    (cancel,) = cancels
    assert (await asyncio.wait_for(cancel, 10)).status == "cancelled"
    await asyncio.sleep(0.3)  # the time to run it, were it run
    # SQLite: it was run, and done; PostgreSQL: queued, and skipped by the queue's worker
    assert await status(hub, user, second.job_id) == "cancelled"
    assert (await hub.chats.messages(user, second.chat_id))[-1].status == "cancelled"
    assert second.job_id not in gate.queued


async def test_a_core_stopping_while_it_queues_a_waiting_turn_queues_it_first(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await admin(hub)
    gate = Gate(hub, monkeypatch)
    first, second = await one_behind_another(hub, user, gate)
    queueing = asyncio.Event()

    async def slowly(spec: JobSpec) -> None:
        if spec.job_id == second.job_id:
            queueing.set()  # marked queued: it must reach the queue now
            await asyncio.sleep(0.1)

    gate.before = slowly
    await gate.let_go(first.job_id)
    await asyncio.wait_for(queueing.wait(), 10)
    await hub.turns.waiting.close()
    assert second.job_id in gate.queued
    assert (await ended(hub, second.job_id)).type == "done"


async def test_a_waiting_turn_whose_core_stopped_is_queued_by_a_core_that_runs_on(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(waiting, "SWEEP_S", 0.1)
    user = await admin(hub)
    gate = Gate(hub, monkeypatch)
    await hub.turns.waiting.resume()  # as a core on RabbitMQ starts: nothing is waiting yet
    other = TurnEngine(  # another core, on the same store and queue
        db=hub.db,
        catalog=hub.catalog,
        queue=hub.queue,
        jobs=hub.jobs,
        registry=hub.registry,
        assistants=hub.assistants,
        attachments=hub.attachments,
        settings=hub.settings.jobs,
    )
    first, second = await one_behind_another(hub, user, gate, core=other)
    await other.waiting.close()  # that core stops, and does not start again
    await gate.let_go(first.job_id)
    assert (await ended(hub, first.job_id)).type == "done"
    # it waited until a core started
    assert (await ended(hub, second.job_id)).type == "done"
    assert gate.queued[second.job_id].options == {"temperature": 0.3, "max_tokens": 7}
