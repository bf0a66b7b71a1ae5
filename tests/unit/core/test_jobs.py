"""Running jobs of an in-process queue: a job cancelled before it reaches the queue never runs,
and what a runner remembers of cancels is bounded."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from patchbay.core import jobs
from patchbay.core.hub import Hub
from patchbay.core.jobs import JobRunner
from patchbay.queue.base import JobSpec
from patchbay.schemas.turns import TurnCreate
from tests.contract.test_store import admin


async def test_a_turn_cancelled_between_its_store_and_its_queue_never_runs(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A channel finds a turn by its delivery as soon as it is stored (`GET
    /v1/deliveries/turn`) and may cancel its job before the turn has queued it: the job ends
    cancelled, and the model is never asked."""
    user = await admin(hub)
    submit = hub.queue.submit
    stored, go_on = asyncio.Event(), asyncio.Event()

    async def held(spec: JobSpec) -> None:  # the turn, between its store and its submit
        stored.set()
        await go_on.wait()
        await submit(spec)

    monkeypatch.setattr(hub.queue, "submit", held)
    sent = TurnCreate(channel="voice", thread="CA1", text="hi", delivery_id="CA1 t1")
    turn = asyncio.create_task(hub.turns.start(user, sent))
    await asyncio.wait_for(stored.wait(), 10)
    found = await hub.deliveries.find(user.id, "voice", "CA1 t1")
    assert found is not None
    assert (await hub.turns.cancel(user, found.job_id)).status == "cancelled"
    go_on.set()
    await turn
    await hub.queue.close(grace_s=10)  # once the job's task, if one ran, has ended
    job = await hub.jobs.job(user, found.job_id)
    assert (job.status, job.error) == ("cancelled", jobs.CANCEL_REASON)
    answer = (await hub.chats.messages(user, found.chat_id))[-1]
    assert (answer.status, answer.content) == ("cancelled", "")


def test_the_cancels_a_runner_remembers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job cancelled for good before it was queued (waiting behind another) never comes to
    the runner: its cancel is forgotten in turn, the oldest first."""
    monkeypatch.setattr(jobs, "MAX_CANCELLED", 2)
    none = cast(Any, None)
    runner = JobRunner(db=none, catalog=none, registry=none, bus=none, settings=none)
    for job_id in ("a", "b", "c"):
        runner.request_cancel(job_id)
    assert list(runner._cancelled) == ["b", "c"]
