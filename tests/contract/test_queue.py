"""The queue and event bus contract; every implementation runs this suite."""

from __future__ import annotations

import asyncio

import pytest

from patchbay.errors import QueueFull
from patchbay.queue.base import JobSpec
from patchbay.queue.memory import MemoryEventBus, MemoryQueue
from patchbay.schemas.jobs import JobEvent


def spec(job_id: str) -> JobSpec:
    return JobSpec(
        job_id=job_id,
        user_id="u",
        chat_id="c",
        message_id="m",
        model="echo",
        messages=(("user", "hi"),),
        prefix_hash="h",
    )


def event(job_id: str, seq: int, kind: str = "running") -> JobEvent:
    return JobEvent(job_id=job_id, seq=seq, type=kind, delta=str(seq))


class QueueContract:
    def make(self, *, concurrency: int, max_depth: int) -> MemoryQueue:
        raise NotImplementedError

    async def test_submitted_jobs_run(self) -> None:
        queue = self.make(concurrency=2, max_depth=10)
        ran: list[str] = []

        async def handler(job: JobSpec) -> None:
            ran.append(job.job_id)

        await queue.start(handler)
        for name in "abc":
            await queue.submit(spec(name))
        await queue.close(grace_s=5)
        assert sorted(ran) == ["a", "b", "c"]

    async def test_full_queue_refuses_with_a_retryable_error(self) -> None:
        queue = self.make(concurrency=1, max_depth=1)
        gate = asyncio.Event()

        async def handler(_job: JobSpec) -> None:
            await gate.wait()

        await queue.start(handler)
        await queue.submit(spec("running"))
        await asyncio.sleep(0)
        await queue.submit(spec("waiting"))
        assert queue.depth() == 1
        with pytest.raises(QueueFull) as refused:
            await queue.submit(spec("refused"))
        assert refused.value.retryable
        gate.set()
        await queue.close(grace_s=5)

    async def test_close_cancels_what_outlives_the_grace_period(self) -> None:
        queue = self.make(concurrency=1, max_depth=5)
        cancelled = asyncio.Event()

        async def handler(_job: JobSpec) -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        await queue.start(handler)
        await queue.submit(spec("slow"))
        await asyncio.sleep(0.01)
        await queue.close(grace_s=0.05)
        assert cancelled.is_set()
        with pytest.raises(QueueFull):
            await queue.submit(spec("late"))

    async def test_a_crashing_handler_does_not_stop_the_queue(self) -> None:
        queue = self.make(concurrency=1, max_depth=5)
        ran: list[str] = []

        async def handler(job: JobSpec) -> None:
            ran.append(job.job_id)
            if job.job_id == "bad":
                raise RuntimeError("boom")

        await queue.start(handler)
        await queue.submit(spec("bad"))
        await queue.submit(spec("good"))
        await queue.close(grace_s=5)
        assert ran == ["bad", "good"]


class EventBusContract:
    def make(self, *, retention_s: float) -> MemoryEventBus:
        raise NotImplementedError

    async def test_replay_then_live_then_end(self) -> None:
        bus = self.make(retention_s=60)
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

    async def test_events_ready_together_come_as_one_batch(self) -> None:
        bus = self.make(retention_s=60)
        for seq in (1, 2, 3):
            await bus.publish(event("j", seq))
        await bus.publish(event("j", 4, "done"))
        batches = [[e.seq for e in batch] async for batch in bus.subscribe("j")]
        assert batches == [[1, 2, 3, 4]]
        assert [b async for b in bus.subscribe("j", after=4)] == []

    async def test_unknown_jobs_end_at_once(self) -> None:
        bus = self.make(retention_s=60)
        assert not bus.knows("nobody")
        assert [batch async for batch in bus.subscribe("nobody")] == []

    async def test_finished_jobs_are_forgotten_after_retention(self) -> None:
        bus = self.make(retention_s=0.01)
        await bus.publish(event("j", 1, "done"))
        assert bus.knows("j")
        await asyncio.sleep(0.05)
        assert not bus.knows("j")

    async def test_many_listeners_each_get_every_event_once(self) -> None:
        bus = self.make(retention_s=60)
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
    def make(self, *, concurrency: int, max_depth: int) -> MemoryQueue:
        return MemoryQueue(concurrency=concurrency, max_depth=max_depth)


class TestMemoryEventBus(EventBusContract):
    def make(self, *, retention_s: float) -> MemoryEventBus:
        return MemoryEventBus(retention_s=retention_s)
