"""The queue and event bus contract; every implementation runs this suite."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest

from patchbay.errors import QueueFull, ServiceUnavailable
from patchbay.queue.base import EventBus, JobHandler, JobQueue, JobSpec, PromptMessage
from patchbay.queue.memory import MemoryEventBus, MemoryQueue
from patchbay.queue.rabbitmq import RabbitBroker, RabbitEventBus, RabbitQueue
from patchbay.schemas.chats import Timings, Usage
from patchbay.schemas.jobs import JobEvent
from tests.support.databases import require_service
from tests.support.rabbitmq import RABBITMQ_URL, amqp_channel


async def connected_broker() -> RabbitBroker:
    broker = RabbitBroker(RABBITMQ_URL, prefix=f"patchbay-test-{secrets.token_hex(4)}")
    try:
        await broker.connect()
    except ServiceUnavailable as exc:
        require_service("RabbitMQ on 127.0.0.1:5672", exc)
    return broker


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


def spec(job_id: str) -> JobSpec:
    return JobSpec(
        job_id=job_id,
        user_id="u",
        chat_id="c",
        message_id="m",
        model="echo",
        messages=(PromptMessage("user", "hi"),),
        prefix_hash="h",
    )


def event(job_id: str, seq: int, kind: str = "running") -> JobEvent:
    return JobEvent(job_id=job_id, seq=seq, type=kind, delta=str(seq))


class QueueContract:
    async def make(self, *, concurrency: int, max_depth: int) -> JobQueue:
        raise NotImplementedError

    async def test_submitted_jobs_run(self) -> None:
        queue = await self.make(concurrency=2, max_depth=10)
        ran: list[str] = []

        async def handler(job: JobSpec) -> None:
            ran.append(job.job_id)

        await queue.start(handler)
        for name in "abc":
            await queue.submit(spec(name))
        await eventually(lambda: len(ran) == 3)
        await queue.close(grace_s=5)
        assert sorted(ran) == ["a", "b", "c"]

    async def test_full_queue_refuses_with_a_retryable_error(self) -> None:
        queue = await self.make(concurrency=1, max_depth=1)
        gate = asyncio.Event()
        started: list[str] = []

        async def handler(job: JobSpec) -> None:
            started.append(job.job_id)
            await gate.wait()

        await queue.start(handler)
        await queue.submit(spec("running"))
        await eventually(lambda: started == ["running"])
        await queue.submit(spec("waiting"))
        await eventually(lambda: queue.depth() == 1)  # RabbitMQ's count arrives a little later
        with pytest.raises(QueueFull) as refused:
            await queue.submit(spec("refused"))
        assert refused.value.retryable
        gate.set()
        await queue.close(grace_s=5)

    async def test_close_cancels_what_outlives_the_grace_period(self) -> None:
        queue = await self.make(concurrency=1, max_depth=5)
        cancelled = asyncio.Event()
        started = asyncio.Event()

        async def handler(_job: JobSpec) -> None:
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        await queue.start(handler)
        await queue.submit(spec("slow"))
        await eventually(lambda: started.is_set())
        await queue.close(grace_s=0.05)
        assert cancelled.is_set()

    async def test_a_crashing_handler_does_not_stop_the_queue(self) -> None:
        queue = await self.make(concurrency=1, max_depth=5)
        ran: list[str] = []

        async def handler(job: JobSpec) -> None:
            ran.append(job.job_id)
            if job.job_id == "bad":
                raise RuntimeError("boom")

        await queue.start(handler)
        await queue.submit(spec("bad"))
        await queue.submit(spec("good"))
        await eventually(lambda: len(ran) == 2)
        await queue.close(grace_s=5)
        assert ran == ["bad", "good"]


class EventBusContract:
    async def make(self, *, retention_s: float, max_finished: int = 1000) -> EventBus:
        raise NotImplementedError

    async def test_replay_then_live_then_end(self) -> None:
        bus = await self.make(retention_s=60)
        for seq in (1, 2, 3):
            await bus.publish(event("j", seq))

        async def listen() -> list[int]:
            return [e.seq async for batch in bus.subscribe("j", after=1) for e in batch]

        listener = asyncio.create_task(listen())
        await asyncio.sleep(0.01)
        await bus.publish(event("j", 4))
        await bus.publish(event("j", 5, "done"))
        await bus.publish(event("j", 6))  # nothing after the terminal event is delivered
        assert await asyncio.wait_for(listener, 5) == [2, 3, 4, 5]

    async def test_events_published_while_a_listener_is_busy_still_reach_it(self) -> None:
        # A listener that is still sending its last batch on (to a slow client) when the job ends
        # gets the end once it asks for more, although no event comes after it to wake it.
        bus = await self.make(retention_s=60)
        await bus.publish(event("j", 1))
        listener = bus.subscribe("j")
        first = await anext(listener)
        await bus.publish(event("j", 2))
        await bus.publish(event("j", 3, "done"))
        rest = await asyncio.wait_for(anext(listener), 5)
        assert [e.seq for e in first] == [1] and [e.seq for e in rest] == [2, 3]

    async def test_events_ready_together_come_as_one_batch(self) -> None:
        bus = await self.make(retention_s=60)
        for seq in (1, 2, 3):
            await bus.publish(event("j", seq))
        await bus.publish(event("j", 4, "done"))
        batches = [[e.seq for e in batch] async for batch in bus.subscribe("j")]
        assert batches == [[1, 2, 3, 4]]
        assert [b async for b in bus.subscribe("j", after=4)] == []

    async def test_unknown_jobs_end_at_once(self) -> None:
        bus = await self.make(retention_s=60)
        assert not bus.knows("nobody")
        assert [batch async for batch in bus.subscribe("nobody")] == []

    async def test_a_wait_for_a_jobs_first_event_ends_when_it_comes(self) -> None:
        bus = await self.make(retention_s=60)
        assert not await bus.until_known("j", 0.01)  # nothing came meanwhile
        waiting = asyncio.create_task(bus.until_known("j", 30))
        await asyncio.sleep(0.01)
        await bus.publish(event("j", 1))
        assert await asyncio.wait_for(waiting, 10)  # woken, not at the end of its 30 s
        assert await bus.until_known("j", 30)  # known already: at once

    async def test_a_finished_jobs_events_replay_as_they_were(self) -> None:
        bus = await self.make(retention_s=60)
        published = [
            JobEvent(job_id="j", seq=1, type="queued", model="m", position=3),
            JobEvent(job_id="j", seq=2, type="running", delta="Hel"),
            JobEvent(job_id="j", seq=3, type="running", delta="lo"),
            JobEvent(
                job_id="j",
                seq=4,
                type="done",
                content="Hello",
                finish_reason="stop",
                usage=Usage(input_tokens=3, output_tokens=2),
                timings=Timings(ttft_ms=1.5, duration_ms=4.25),
                model="m",
            ),
        ]
        for one in published:
            await bus.publish(one)
        replayed = [e async for batch in bus.subscribe("j") for e in batch]
        assert [e.model_dump() for e in replayed] == [e.model_dump() for e in published]
        later = [e.seq async for batch in bus.subscribe("j", after=2) for e in batch]
        assert later == [3, 4]

    async def test_a_bus_that_joined_mid_job_gives_earlier_listeners_the_whole_answer(
        self,
    ) -> None:
        # A core started while a worker ran the job: its first event of it is number 5.
        bus = await self.make(retention_s=60)
        await bus.publish(event("j", 5))

        async def listen(after: int) -> list[tuple[int, str, str | None]]:
            batches = bus.subscribe("j", after=after)
            return [(e.seq, e.type, e.delta) async for batch in batches for e in batch]

        new, resumed, caught = (asyncio.create_task(listen(n)) for n in (0, 3, 4))
        await asyncio.sleep(0.01)
        await bus.publish(event("j", 6))
        await bus.publish(
            JobEvent(job_id="j", seq=7, type="done", content="1 2 3 4 5 6", model="m")
        )
        whole = [(6, "running", "1 2 3 4 5 6"), (7, "done", None)]
        assert await asyncio.wait_for(new, 5) == whole
        assert await asyncio.wait_for(resumed, 5) == [(4, "restarted", None), *whole]
        assert await asyncio.wait_for(caught, 5) == [
            (5, "running", "5"),
            (6, "running", "6"),
            (7, "done", None),
        ]
        assert await listen(3) == [(4, "restarted", None), *whole]  # and once it has ended
        assert await listen(5) == [(6, "running", "6"), (7, "done", None)]

    async def test_a_bus_that_joined_at_a_takeover_replays_from_it(self) -> None:
        bus = await self.make(retention_s=60)
        takeover = 1_000_000_001
        await bus.publish(JobEvent(job_id="j", seq=takeover, type="restarted"))
        await bus.publish(event("j", takeover + 1))
        await bus.publish(event("j", takeover + 2, "done"))
        seen = [(e.seq, e.type) async for batch in bus.subscribe("j", after=3) for e in batch]
        assert seen == [(takeover, "restarted"), (takeover + 1, "running"), (takeover + 2, "done")]

    async def test_finished_jobs_are_forgotten_after_retention(self) -> None:
        bus = await self.make(retention_s=0.5)
        await bus.publish(event("j", 1, "done"))
        assert bus.knows("j")
        await asyncio.sleep(0.7)
        assert not bus.knows("j")

    async def test_only_the_last_max_finished_jobs_are_kept(self) -> None:
        bus = await self.make(retention_s=60, max_finished=2)
        await bus.publish(event("running", 1))
        for job_id in ("a", "b", "c"):
            await bus.publish(event(job_id, 1, "done"))
        await eventually(lambda: bus.knows("c"))
        assert [bus.knows(j) for j in ("a", "b", "c")] == [False, True, True]
        assert bus.knows("running")  # a job that has not ended is never dropped
        assert [e.seq async for batch in bus.subscribe("b") for e in batch] == [1]

    async def test_many_listeners_each_get_every_event_once(self) -> None:
        bus = await self.make(retention_s=60)
        await bus.publish(event("j", 1, "queued"))

        async def listen() -> list[int]:
            return [e.seq async for batch in bus.subscribe("j") for e in batch]

        listeners = [asyncio.create_task(listen()) for _ in range(50)]
        await asyncio.sleep(0.01)
        for seq in range(2, 20):
            await bus.publish(event("j", seq))
        await bus.publish(event("j", 20, "done"))
        results = await asyncio.wait_for(asyncio.gather(*listeners), 5)
        assert all(r == list(range(1, 21)) for r in results)


class TestMemoryQueue(QueueContract):
    async def make(self, *, concurrency: int, max_depth: int) -> JobQueue:
        return MemoryQueue(concurrency=concurrency, max_depth=max_depth)

    async def test_a_closed_queue_refuses_jobs(self) -> None:
        queue = await self.make(concurrency=1, max_depth=5)
        await queue.close(grace_s=0)
        with pytest.raises(QueueFull):
            await queue.submit(spec("late"))

    async def test_a_job_cancelled_before_its_task_started_frees_its_place(self) -> None:
        """A cancel in the loop's turn of the submit ends the job's task before it runs a line
        of its own: its place in the queue is freed all the same (it was held for good)."""
        queue = await self.make(concurrency=1, max_depth=1)
        ran: list[str] = []

        async def handler(job: JobSpec) -> None:
            ran.append(job.job_id)

        await queue.start(handler)
        await queue.submit(spec("cancelled"))
        assert await queue.cancel("cancelled")
        await eventually(lambda: queue.depth() == 0)
        await queue.submit(spec("next"))
        await eventually(lambda: ran == ["next"])
        await queue.close(grace_s=5)


class TestMemoryEventBus(EventBusContract):
    async def make(self, *, retention_s: float, max_finished: int = 1000) -> EventBus:
        return MemoryEventBus(retention_s=retention_s, max_finished=max_finished)

    async def test_waits_given_up_leave_nothing_behind(self) -> None:
        """A listener of a job that never comes here (it ended elsewhere, long ago) times out
        or leaves; the bus keeps no trace of its wait."""
        bus = MemoryEventBus(retention_s=60, max_finished=10)
        assert not await bus.until_known("never", 0.01)
        leaving = asyncio.create_task(bus.until_known("never", 30))
        await asyncio.sleep(0.01)
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert bus._unknown == {}


class TestRabbitQueue(QueueContract):
    @pytest.fixture(autouse=True)
    async def _broker(self) -> AsyncIterator[None]:
        self.broker = await connected_broker()
        self.names: list[str] = []
        yield
        async with amqp_channel() as channel:
            for name in self.names:
                await channel.queue_delete(name)
            await channel.exchange_delete(f"{self.broker.prefix}.control")
        await self.broker.close()

    async def make(self, *, concurrency: int, max_depth: int) -> JobQueue:
        name = f"patchbay.jobs.test-{secrets.token_hex(6)}"
        self.names.append(name)
        queue = RabbitQueue(
            self.broker, queue_name=name, max_depth=max_depth, concurrency=concurrency
        )
        await queue.open()
        return queue

    async def test_a_job_left_unfinished_by_a_stopping_worker_goes_to_another(self) -> None:
        first = await self.make(concurrency=1, max_depth=5)
        name = self.names[-1]
        gate = asyncio.Event()

        async def stuck(_job: JobSpec) -> None:
            gate.set()
            await asyncio.sleep(60)

        await first.start(stuck)
        await first.submit(spec("handed-back"))
        await asyncio.wait_for(gate.wait(), 5)
        await first.close(grace_s=0.05)  # cancelled mid-job: not acknowledged
        second = RabbitQueue(self.broker, queue_name=name, max_depth=5, concurrency=1)
        await second.open()
        ran: list[str] = []

        async def handler(job: JobSpec) -> None:
            ran.append(job.job_id)

        await second.start(handler)
        await eventually(lambda: ran == ["handed-back"])
        await second.close(grace_s=1)

    @pytest.mark.parametrize(
        "body",
        [
            b'{"messages": [["user"]]}',  # a message too short to be one
            b'{"messages": [["user", "hi", [{"media_type": "a/b", "data": "!", "text": ""}]]]}',
            b'{"messages": [["user", "hi", [{"media_type": "a/b", "data": "a", "text": ""}]]]}',
            b'{"messages": "not a list"}',
            b'{"job_id": ["j"], "user_id": "u", "chat_id": "c", "message_id": "m", "model": "m",'
            b' "messages": [], "prefix_hash": "h"}',
            b"[1, 2]",
            b"\xff not json",
        ],
    )
    async def test_a_message_that_is_not_a_job_is_dropped_and_the_worker_goes_on(
        self, body: bytes
    ) -> None:
        worker = await self.make(concurrency=1, max_depth=5)
        ran: list[str] = []

        async def handler(job: JobSpec) -> None:
            ran.append(job.job_id)

        await worker.start(handler)
        async with amqp_channel() as channel:
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=self.names[-1],
            )
        await worker.submit(spec("good"))
        await eventually(lambda: ran == ["good"])
        await worker.close(grace_s=1)
        async with amqp_channel() as channel:  # nothing left to come back to the next worker
            declared = await channel.declare_queue(self.names[-1], passive=True)
            assert declared.declaration_result.message_count == 0

    async def test_a_job_stops_in_a_worker_that_lost_its_connection(
        self,
    ) -> None:
        if shutil.which("rabbitmqctl") is None:
            pytest.skip("rabbitmqctl is not on PATH")
        name = f"patchbay-test-worker-{secrets.token_hex(4)}"
        cut_broker = RabbitBroker(f"{RABBITMQ_URL}?name={name}", prefix=self.broker.prefix)
        other = await self.make(concurrency=1, max_depth=5)
        cut = RabbitQueue(cut_broker, queue_name=self.names[-1], max_depth=5, concurrency=1)
        running: list[str] = []
        handed_over = asyncio.Event()

        def runner(worker: str) -> JobHandler:
            async def handler(_job: JobSpec) -> None:
                running.append(worker)
                try:
                    if worker == "other":
                        handed_over.set()
                    await asyncio.sleep(60)
                finally:
                    running.remove(worker)

            return handler

        try:
            await cut.open()
            await cut.start(runner("cut"))
            await other.submit(spec("j"))
            await eventually(lambda: running == ["cut"])
            await other.start(runner("other"))
            await close_connection(name)
            await asyncio.wait_for(handed_over.wait(), 10)
            # The broker hands the job over as it drops the connection, and the worker hears of
            # the drop at about that moment: from then on it runs in one worker only (it ran on
            # for its minute before).
            await eventually(lambda: running == ["other"])
        finally:
            await other.close(grace_s=0)
            await cut.close(grace_s=0)
            await cut_broker.close()

    async def test_a_new_max_depth_does_not_stop_the_queue_from_opening(self) -> None:
        before = await self.make(concurrency=1, max_depth=5)
        ran: list[str] = []

        async def handler(job: JobSpec) -> None:
            ran.append(job.job_id)

        # PATCHBAY_JOBS__MAX_DEPTH changed between two runs: the queue exists with the old one
        after = RabbitQueue(self.broker, queue_name=self.names[-1], max_depth=10, concurrency=1)
        await after.open()
        await after.start(handler)
        await after.submit(spec("still-works"))
        await eventually(lambda: ran == ["still-works"])
        await after.close(grace_s=1)
        await before.close(grace_s=0)

    async def test_a_job_for_a_queue_that_is_gone_is_refused_not_lost(self) -> None:
        core = await self.make(concurrency=1, max_depth=5)
        async with amqp_channel() as channel:  # an operator deletes it by hand
            await channel.queue_delete(self.names[-1])
        with pytest.raises(ServiceUnavailable):
            await core.submit(spec("nowhere"))
        await core.close(grace_s=0)

    async def test_a_cancel_with_no_worker_up_says_no_process_holds_the_job(self) -> None:
        core = await self.make(concurrency=1, max_depth=5)  # a core: it submits, runs nothing
        assert await core.cancel("left-by-a-dead-worker") is False
        await core.close(grace_s=0)

    async def test_a_cancel_while_rabbitmq_is_away_is_service_unavailable(self) -> None:
        if shutil.which("rabbitmqctl") is None:
            pytest.skip("rabbitmqctl is not on PATH")
        name = f"patchbay-test-core-{secrets.token_hex(4)}"
        cut_broker = RabbitBroker(f"{RABBITMQ_URL}?name={name}", prefix=self.broker.prefix)
        await self.make(concurrency=1, max_depth=5)  # the queue, and its cleanup
        core = RabbitQueue(cut_broker, queue_name=self.names[-1], max_depth=5, concurrency=1)
        try:
            await core.open()
            await close_connection(name)
            with pytest.raises(ServiceUnavailable) as away:  # a 503 the client may retry
                await core.cancel("running-elsewhere")
            assert away.value.retryable
        finally:
            await core.close(grace_s=0)
            await cut_broker.close()

    async def test_cancel_reaches_the_worker_that_runs_the_job(self) -> None:
        worker = await self.make(concurrency=1, max_depth=5)
        told: list[str] = []
        interrupted = asyncio.Event()

        async def handler(_job: JobSpec) -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                interrupted.set()

        await worker.start(handler, told.append)
        core = RabbitQueue(self.broker, queue_name=self.names[-1], max_depth=5, concurrency=1)
        await core.open()
        await core.submit(spec("long"))
        await asyncio.sleep(0.2)
        assert await core.cancel("long")
        await asyncio.wait_for(interrupted.wait(), 5)
        assert told == ["long"]
        await worker.close(grace_s=1)
        await core.close(grace_s=0)


class _BrokerBus:
    """A bus pair for the contract: events published by a worker's bus, listened to on a core's.

    Across processes delivery takes a moment, so `publish` here returns once the core has it.
    """

    def __init__(self, publisher: RabbitEventBus, follower: RabbitEventBus) -> None:
        self._publisher = publisher
        self._follower = follower

    async def publish(self, event: JobEvent) -> None:
        await self._publisher.publish(event)
        await eventually(lambda: self._follower.has(event.job_id, event.seq) or event.seq < 0)

    def subscribe(self, job_id: str, *, after: int = 0) -> AsyncIterator[list[JobEvent]]:
        return self._follower.subscribe(job_id, after=after)

    def knows(self, job_id: str) -> bool:
        return self._follower.knows(job_id)

    async def until_known(self, job_id: str, timeout_s: float) -> bool:
        return await self._follower.until_known(job_id, timeout_s)


class TestRabbitEventBus(EventBusContract):
    @pytest.fixture(autouse=True)
    async def _broker(self) -> AsyncIterator[None]:
        self.broker = await connected_broker()
        yield
        async with amqp_channel() as channel:
            await channel.exchange_delete(f"{self.broker.prefix}.events")
        await self.broker.close()

    async def make(self, *, retention_s: float, max_finished: int = 1000) -> EventBus:
        publisher, follower = (
            RabbitEventBus(
                self.broker, retention_s=retention_s, max_finished=max_finished, follow=follow
            )
            for follow in (False, True)
        )
        await publisher.open()
        await follower.open()
        return _BrokerBus(publisher, follower)


async def close_connection(name: str) -> None:
    """Have RabbitMQ drop the connection named `name` (as a network blip or a broker failover
    would); a robust connection then reconnects by itself."""
    listed = await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
    )
    (pid,) = [line.split("\t")[0] for line in listed.stdout.splitlines() if name in line]
    await asyncio.to_thread(
        subprocess.run, ["rabbitmqctl", "close_connection", pid, "test"], check=True
    )


class TestRabbitEventBusOutages:
    @pytest.fixture(autouse=True)
    async def _broker(self) -> AsyncIterator[None]:
        if shutil.which("rabbitmqctl") is None:
            pytest.skip("rabbitmqctl is not on PATH")
        self.broker = await connected_broker()
        self.name = f"patchbay-test-core-{secrets.token_hex(4)}"
        self.core_broker = RabbitBroker(
            f"{RABBITMQ_URL}?name={self.name}", prefix=self.broker.prefix
        )
        yield
        await self.core_broker.close()
        async with amqp_channel() as channel:
            await channel.exchange_delete(f"{self.broker.prefix}.events")
        await self.broker.close()

    async def test_a_job_that_ends_while_the_core_is_cut_off_still_ends_for_its_listener(
        self,
    ) -> None:
        worker = RabbitEventBus(self.broker, retention_s=60, max_finished=10, follow=False)
        core = RabbitEventBus(self.core_broker, retention_s=60, max_finished=10, follow=True)
        await worker.open()
        await core.open()
        await worker.publish(event("j", 1, "queued"))
        await eventually(lambda: core.knows("j"))

        async def listen() -> list[JobEvent]:
            return [e async for batch in core.subscribe("j") for e in batch]

        listener = asyncio.create_task(listen())
        await close_connection(self.name)
        for seq, kind in ((2, "running"), (3, "running"), (4, "done")):
            await worker.publish(event("j", seq, kind))
        seen = await asyncio.wait_for(listener, 20)
        assert [e.seq for e in seen] == [1, 2, 3, 4]

    async def test_a_job_that_ends_while_the_worker_is_cut_off_still_ends_for_its_listener(
        self,
    ) -> None:
        name = f"patchbay-test-worker-{secrets.token_hex(4)}"
        worker_broker = RabbitBroker(f"{RABBITMQ_URL}?name={name}", prefix=self.broker.prefix)
        worker = RabbitEventBus(worker_broker, retention_s=60, max_finished=10, follow=False)
        core = RabbitEventBus(self.core_broker, retention_s=60, max_finished=10, follow=True)
        try:
            await worker.open()
            await core.open()
            await worker.publish(event("j", 1, "queued"))
            await eventually(lambda: core.knows("j"))

            async def listen() -> list[JobEvent]:
                return [e async for batch in core.subscribe("j") for e in batch]

            listener = asyncio.create_task(listen())
            await close_connection(name)
            for seq, kind in ((2, "running"), (3, "done")):
                await asyncio.wait_for(worker.publish(event("j", seq, kind)), 20)
            seen = await asyncio.wait_for(listener, 20)
        finally:
            await worker_broker.close()
        assert [e.seq for e in seen] == [1, 2, 3]
