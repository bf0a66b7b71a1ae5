"""Turns under way, one per call: an answer that outlasts Twilio's webhook is picked up by the
next request of the same call (the caller hears a pause and Twilio follows a <Redirect>)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from patchbay.schemas.turns import TurnResult

FORGET_AFTER_S = 300.0  # answers nobody came back for (the caller hung up)


class CallTurns:
    def __init__(self) -> None:
        self._turns: dict[str, asyncio.Task[TurnResult]] = {}
        self._finished: dict[str, float] = {}

    def start(self, call_sid: str, turn: Coroutine[Any, Any, TurnResult]) -> None:
        """Run `turn` for the call; a turn the call had under way is given up."""
        self._forget_old()
        previous = self._turns.pop(call_sid, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.create_task(turn)
        task.add_done_callback(lambda done: self._note_finished(call_sid, done))
        self._turns[call_sid] = task

    def _note_finished(self, call_sid: str, task: asyncio.Task[TurnResult]) -> None:
        if self._turns.get(call_sid) is task:
            self._finished[call_sid] = time.monotonic()

    def under_way(self, call_sid: str) -> bool:
        return call_sid in self._turns

    async def wait(self, call_sid: str, timeout_s: float) -> TurnResult | None:
        """The call's answer, once it is there; None while it is still coming after `timeout_s`.
        Raises what the turn raised."""
        task = self._turns[call_sid]
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done or task.cancelled():  # cancelled: the call asked something new meanwhile
            return None
        self._turns.pop(call_sid, None)
        self._finished.pop(call_sid, None)
        return task.result()

    def cancel_all(self) -> None:
        for task in self._turns.values():
            task.cancel()

    def _forget_old(self) -> None:
        cutoff = time.monotonic() - FORGET_AFTER_S
        for call_sid in [c for c, at in self._finished.items() if at < cutoff]:
            self._turns.pop(call_sid, None)
            self._finished.pop(call_sid, None)
