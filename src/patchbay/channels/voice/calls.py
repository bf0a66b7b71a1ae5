"""Turns under way, one per call: an answer that outlasts Twilio's webhook is picked up by the
next request of the same call (the caller hears a pause and Twilio follows a <Redirect>)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from patchbay.schemas.jobs import JobEvent

FORGET_AFTER_S = 300.0  # answers nobody came back for (the caller hung up)


@dataclass(slots=True)
class _Turn:
    task: asyncio.Task[JobEvent]
    asked_by: str | None  # the idempotency token of the webhook that asked
    job_id: str | None = None  # once the core made the job: another process can follow it


class CallTurns:
    def __init__(self) -> None:
        self._turns: dict[str, _Turn] = {}
        self._finished: dict[str, float] = {}

    def start(
        self,
        call_sid: str,
        turn: Coroutine[Any, Any, JobEvent],
        *,
        job_id: str | None = None,
        asked_by: str | None = None,
    ) -> None:
        """Run `turn` (to its outcome) for the call; a turn the call had under way is given up."""
        self._forget_old()
        previous = self._turns.get(call_sid)
        self._drop(call_sid)
        if previous is not None:
            previous.task.cancel()
        task = asyncio.create_task(turn)
        task.add_done_callback(lambda done: self._note_finished(call_sid, done))
        self._turns[call_sid] = _Turn(task, asked_by, job_id)

    def note_job(self, call_sid: str, job_id: str) -> None:
        """The core made the job of the call's turn."""
        if call_sid in self._turns:
            self._turns[call_sid].job_id = job_id

    def job(self, call_sid: str) -> str | None:
        turn = self._turns.get(call_sid)
        return None if turn is None else turn.job_id

    def asked(self, call_sid: str, token: str | None) -> bool:
        """Whether the call's turn was asked by a webhook with idempotency `token` (Twilio sends
        the same one when it retries)."""
        turn = self._turns.get(call_sid)
        return token is not None and turn is not None and turn.asked_by == token

    def _note_finished(self, call_sid: str, task: asyncio.Task[JobEvent]) -> None:
        if self._task(call_sid) is task:
            self._finished[call_sid] = time.monotonic()

    def _task(self, call_sid: str) -> asyncio.Task[JobEvent] | None:
        turn = self._turns.get(call_sid)
        return None if turn is None else turn.task

    def under_way(self, call_sid: str) -> bool:
        return call_sid in self._turns

    async def wait(self, call_sid: str, timeout_s: float) -> JobEvent | None:
        """The call's outcome, once it is there; None while it is still coming after
        `timeout_s`. Raises what the turn raised."""
        task = self._turns[call_sid].task
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done or task.cancelled():  # cancelled: the call asked something new meanwhile
            return None
        if self._task(call_sid) is task:  # not already taken, nor a turn started since
            self._drop(call_sid)
        return task.result()

    def cancel_all(self) -> None:
        for turn in self._turns.values():
            turn.task.cancel()

    def _drop(self, call_sid: str) -> None:
        self._turns.pop(call_sid, None)
        self._finished.pop(call_sid, None)

    def _forget_old(self) -> None:
        cutoff = time.monotonic() - FORGET_AFTER_S
        for call_sid in [c for c, at in self._finished.items() if at < cutoff]:
            self._drop(call_sid)
