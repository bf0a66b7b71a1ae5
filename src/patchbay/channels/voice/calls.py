"""Questions under way in this process, by what the call's redirect names: an answer that outlasts
Twilio's webhook is picked up by the next request for it (the caller hears a pause while Twilio
follows a <Redirect>), here or, by the same names, in any other voice process. A call that ended
has its questions stopped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

from patchbay.schemas.jobs import JobEvent

FORGET_AFTER_S = 300.0  # answers nobody came back for (the caller hung up, another process spoke)


@dataclass(frozen=True, slots=True)
class Asked:
    """A question as a redirect names it: its turn's `delivery_id` (by which any process finds
    the turn once it is stored), when it was asked (wall clock, seconds), and its job once known.
    A redirect from before delivery ids names its job alone."""

    delivery_id: str | None
    since: int
    job_id: str | None = None

    def __post_init__(self) -> None:
        if self.delivery_id is None and self.job_id is None:
            raise ValueError("a question is named by its delivery or its job")

    @property
    def key(self) -> str:
        """What this process keeps the question under."""
        return self.delivery_id or f"job:{self.job_id}"

    def query(self) -> dict[str, str]:
        """The redirect's query, naming this question."""
        named = {"delivery": self.delivery_id, "since": str(self.since), "job": self.job_id}
        return {name: value for name, value in named.items() if value is not None}


@dataclass(frozen=True, slots=True)
class Caller:
    """Whose question it is: the call (its CallSid) and the user it speaks for."""

    call: str
    user_id: str


@dataclass(slots=True)
class _Turn:
    task: asyncio.Task[JobEvent]
    asked: Asked
    caller: Caller
    finished_at: float | None = None
    # the core has its turn (or the turn ended, or it is not this process that hands it over)
    settled: asyncio.Event = field(default_factory=asyncio.Event)


class CallTurns:
    def __init__(self) -> None:
        self._turns: dict[str, _Turn] = {}

    def start(
        self,
        asked: Asked,
        turn: Coroutine[Any, Any, JobEvent],
        *,
        caller: Caller,
        storing: bool = False,
    ) -> None:
        """Run `turn` (to its outcome) for `asked`, which `caller` asked and has none under way
        here. `storing`: the turn hands the question to the core (rather than following one
        handed on elsewhere), and says so with `note_job` once the core has it."""
        self._forget_old()
        task = asyncio.create_task(turn)
        record = _Turn(task, asked, caller)
        if not storing:
            record.settled.set()
        task.add_done_callback(lambda done: _finished(record, done))
        self._turns[asked.key] = record

    def under_way(self, key: str) -> bool:
        return key in self._turns

    def asked(self, key: str) -> Asked:
        return self._turns[key].asked

    def note_job(self, key: str, job_id: str) -> None:
        """The core made (or names) the question's job: a redirect names it from now on."""
        if key in self._turns:
            record = self._turns[key]
            record.asked = replace(record.asked, job_id=job_id)
            record.settled.set()

    async def wait(self, key: str, timeout_s: float) -> JobEvent | None:
        """The outcome, once it is there; None while it is still coming after `timeout_s` (or
        when this process stops meanwhile). Raises what the turn raised."""
        record = self._turns[key]
        done, _ = await asyncio.wait({record.task}, timeout=timeout_s)
        if not done or record.task.cancelled():
            return None
        if self._turns.get(key) is record:  # taken once (two requests may wait for it)
            del self._turns[key]
        return record.task.result()

    async def end(self, call: str, *, grace_s: float) -> list[tuple[Caller, str]]:
        """Stop and forget the questions of `call`, which ended (the caller hung up), after up
        to `grace_s` for those the core does not have yet, so that none is left running there
        unknown. The caller and job of each turn that was still under way, to cancel in the
        core."""
        records = [record for record in self._turns.values() if record.caller.call == call]
        running = [record for record in records if not record.task.done()]
        await _settle(running, grace_s)
        for record in records:  # before the turns stop, so that no request waiting for one
            if self._turns.get(record.asked.key) is record:  # takes the call as going on
                del self._turns[record.asked.key]
        await _cancel(running)
        return [(r.caller, r.asked.job_id) for r in running if r.asked.job_id is not None]

    async def close(self, *, grace_s: float) -> None:
        """Stop, after up to `grace_s` for the questions whose turn the core does not have yet
        (a recording being fetched): once it has, the process the call's next redirect reaches
        follows it; before, nobody could."""
        records = list(self._turns.values())
        await _settle(records, grace_s)
        await _cancel(records)

    def _forget_old(self) -> None:
        cutoff = time.monotonic() - FORGET_AFTER_S
        for key, record in list(self._turns.items()):
            if record.finished_at is not None and record.finished_at < cutoff:
                del self._turns[key]


async def _settle(records: list[_Turn], grace_s: float) -> None:
    """Wait up to `grace_s` for those of `records` handing their question to the core to have
    done so (their job is known then)."""
    storing = [
        asyncio.create_task(record.settled.wait())
        for record in records
        if not record.settled.is_set()
    ]
    if storing and grace_s > 0:
        await asyncio.wait(storing, timeout=grace_s)
    await _cancel_tasks(storing)


async def _cancel(records: list[_Turn]) -> None:
    await _cancel_tasks([record.task for record in records])


async def _cancel_tasks(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _finished(record: _Turn, task: asyncio.Task[JobEvent]) -> None:
    record.finished_at = time.monotonic()
    record.settled.set()
    if not task.cancelled():
        task.exception()  # retrieved: one nobody came back for is not logged as never retrieved
