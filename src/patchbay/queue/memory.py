"""In-process queue and event bus: the embedded default, where the core runs jobs itself."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from functools import partial

from patchbay.errors import QueueFull
from patchbay.queue.base import CancelHook, JobHandler, JobSpec
from patchbay.schemas.jobs import JobEvent

logger = logging.getLogger(__name__)


class MemoryQueue:
    """Runs each job as an asyncio task, at most `concurrency` at once, refusing past `max_depth`."""

    name = "memory"

    def __init__(self, *, concurrency: int, max_depth: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._max_depth = max_depth
        self._waiting: set[str] = set()  # jobs waiting for a slot
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()
        self._handler: JobHandler | None = None
        self._on_cancel: CancelHook | None = None
        self._closed = False

    async def start(self, handler: JobHandler, on_cancel: CancelHook | None = None) -> None:
        self._handler = handler
        self._on_cancel = on_cancel

    async def submit(self, job: JobSpec) -> None:
        if self._handler is None or self._closed:
            raise QueueFull("the job queue is not accepting work right now; try again shortly")
        if len(self._waiting) >= self._max_depth:
            raise QueueFull(f"{len(self._waiting)} jobs are waiting; try again shortly")
        self._waiting.add(job.job_id)
        task = asyncio.create_task(self._run(self._handler, job), name=f"job-{job.job_id}")
        self._tasks[job.job_id] = task
        task.add_done_callback(partial(self._ended, job.job_id))

    def _ended(self, job_id: str, _task: asyncio.Task[None]) -> None:
        """A job's task is done: also one cancelled before it started (`cancel` just after
        `submit`), which never ran a line of `_run`."""
        self._tasks.pop(job_id, None)
        self._waiting.discard(job_id)
        self._cancelled.discard(job_id)

    async def _run(self, handler: JobHandler, job: JobSpec) -> None:
        acquired = False
        try:
            try:
                await self._slots.acquire()
                acquired = True
            except asyncio.CancelledError:
                if job.job_id not in self._cancelled:
                    raise
                # Cancelled while waiting: the handler, which knows, records it without running.
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
            finally:
                self._waiting.discard(job.job_id)
            await handler(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("job %s crashed its handler", job.job_id)
        finally:
            if acquired:
                self._slots.release()

    async def cancel(self, job_id: str) -> bool:
        """Interrupt a waiting or running job; False when this queue does not hold it."""
        task = self._tasks.get(job_id)
        if task is None or task.done():
            return False
        self._cancelled.add(job_id)
        if self._on_cancel is not None:
            self._on_cancel(job_id)
        task.cancel()
        return True

    def depth(self) -> int:
        return len(self._waiting)

    async def close(self, grace_s: float) -> None:
        self._closed = True
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks.values()), timeout=grace_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)


def _complete_from(first: JobEvent) -> int:
    """The first event number a log holds every event from, given the first event it got: 0
    when it holds all that matters, from the job's first token (`queued`, number 1, says only
    where the job waited) or an attempt's first event (`restarted`: what came before it is void);
    else that event's number: a process that joined mid-job (a core started while a worker ran
    the job) holds nothing before it."""
    return 0 if first.seq <= 2 or first.type == "restarted" else first.seq


def caught_up(terminal: JobEvent, after: int) -> list[JobEvent]:
    """For a listener that saw the events up to `after` of a job whose events from there on are
    not all here: the job's outcome, with its whole answer as one token just before it (the
    outcome holds it too, should no number be left for that token), after a `restarted` (start
    again) when the listener may have had some of the answer."""
    events = []
    if after > 1:  # past `queued`: tokens, perhaps
        events.append(
            JobEvent(job_id=terminal.job_id, seq=after + 1, type="restarted", model=terminal.model)
        )
    last = events[-1].seq if events else after
    if terminal.content and terminal.seq - 1 > last:
        events.append(
            JobEvent.model_construct(
                job_id=terminal.job_id, seq=terminal.seq - 1, type="running", delta=terminal.content
            )
        )
    return [*events, terminal]


class _JobLog:
    __slots__ = ("events", "since", "waiters")

    def __init__(self, first: JobEvent) -> None:
        self.events: list[JobEvent] = []
        self.waiters: list[asyncio.Future[None]] = []
        self.since = _complete_from(first)  # see `_complete_from`


class _FinishedLog:
    """A finished job's events, kept small until replayed: a token as a (number, text) pair, any
    other event as its JSON (as models, a finished job's events held ~5 KB for the retention)."""

    __slots__ = ("events", "job_id", "since")

    def __init__(self, job_id: str, events: list[JobEvent], since: int) -> None:
        self.job_id = job_id
        self.since = since
        self.events: list[bytes | tuple[int, str]] = [
            (e.seq, e.delta or "") if e.type == "running" else e.model_dump_json().encode()
            for e in events
        ]

    def replay(self, after: int) -> list[JobEvent]:
        if after < self.since - 1:
            item = self.events[-1]
            assert isinstance(item, bytes)  # noqa: S101 - the last event is the outcome
            return caught_up(JobEvent.model_validate_json(item), after)
        replayed = []
        for item in self.events:
            if isinstance(item, tuple):
                if item[0] > after:
                    replayed.append(
                        JobEvent.model_construct(
                            job_id=self.job_id, seq=item[0], type="running", delta=item[1]
                        )
                    )
            else:
                event = JobEvent.model_validate_json(item)
                if event.seq > after:
                    replayed.append(event)
        return replayed


class MemoryEventBus:
    """Keeps each job's events in memory so listeners can resume: while it runs, then, compacted,
    for `retention_s` after it ends, the last `max_finished` finished jobs at most. A listener
    that comes later resumes from the store (the job's outcome, whole)."""

    def __init__(self, *, retention_s: float, max_finished: int) -> None:
        self._logs: dict[str, _JobLog | _FinishedLog] = {}
        self._retention_s = retention_s
        self._max_finished = max_finished
        self._finished: deque[tuple[float, str]] = deque()  # (forget at, job id), oldest first
        self._unknown: dict[str, list[asyncio.Future[None]]] = {}  # see `until_known`

    def knows(self, job_id: str) -> bool:
        self._forget_old()
        return job_id in self._logs

    async def until_known(self, job_id: str, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the job's first event here; whether the bus holds its
        events now."""
        if self.knows(job_id):
            return True
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._unknown.setdefault(job_id, [])
        waiters.append(waiter)
        try:
            await asyncio.wait([waiter], timeout=timeout_s)
        finally:
            if not waiter.done():  # not woken (`publish` takes the list of those it wakes)
                waiters.remove(waiter)
                if not waiters:
                    del self._unknown[job_id]
        return self.knows(job_id)

    def has(self, job_id: str, seq: int) -> bool:
        """Whether the event numbered `seq` (or a later one) of the job is here, or the job has
        ended here (nothing later will come)."""
        self._forget_old()
        log = self._logs.get(job_id)
        if isinstance(log, _FinishedLog):
            return True
        return log is not None and bool(log.events) and log.events[-1].seq >= seq

    async def publish(self, event: JobEvent) -> None:
        log = self._logs.get(event.job_id)
        if isinstance(log, _FinishedLog):
            return  # it has ended: whatever comes now is late
        if log is None:
            log = self._logs[event.job_id] = _JobLog(event)
            for waiter in self._unknown.pop(event.job_id, ()):
                if not waiter.done():
                    waiter.set_result(None)
        elif log.events and event.seq <= log.events[-1].seq:
            return  # seen already (an event that came back from the broker), or late
        log.events.append(event)
        waiters, log.waiters = log.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if event.terminal:
            # Listeners following it keep the full log they hold; later ones get a compact copy.
            self._logs[event.job_id] = _FinishedLog(event.job_id, log.events, log.since)
            self._finished.append((time.monotonic() + self._retention_s, event.job_id))
            self._forget_old()

    def _forget_old(self) -> None:
        """Drop finished jobs past their retention, and the oldest past `max_finished` (checked
        whenever the bus is used, so no timer per job)."""
        finished = self._finished
        if not finished:
            return
        now = time.monotonic()
        while finished and (finished[0][0] <= now or len(finished) > self._max_finished):
            self._logs.pop(finished.popleft()[1], None)

    async def subscribe(self, job_id: str, *, after: int = 0) -> AsyncIterator[list[JobEvent]]:
        self._forget_old()
        log = self._logs.get(job_id)
        if log is None:
            return
        if isinstance(log, _FinishedLog):
            replayed = log.replay(after)
            if replayed:
                yield replayed
            return
        if after < log.since - 1:  # events it has not seen are not here: its outcome, whole
            yield caught_up(await _outcome(log), after)
            return
        async for batch in _live(log, after):
            yield batch


async def _live(log: _JobLog, after: int) -> AsyncIterator[list[JobEvent]]:
    """A running job's events after `after`: those held, then each new batch, to the last.

    Events published while the listener is away with a batch (sending it on to a slow client)
    are in the log when it comes back: it waits only when nothing new is there, else a job that
    ended meanwhile would leave it waiting for an event that never comes.
    """
    index = 0
    while True:
        if index == len(log.events):
            await _next_event(log)
        fresh, index = log.events[index:], len(log.events)
        batch = []
        for event in fresh:
            if event.seq > after:
                batch.append(event)
            if event.terminal:
                if batch:
                    yield batch
                return
        if batch:
            yield batch


async def _next_event(log: _JobLog) -> None:
    waiter = asyncio.get_running_loop().create_future()
    log.waiters.append(waiter)
    await waiter


async def _outcome(log: _JobLog) -> JobEvent:
    """A running job's terminal event, when it comes."""
    while not log.events[-1].terminal:
        await _next_event(log)
    return log.events[-1]
