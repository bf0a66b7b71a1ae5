"""The turn engine: store what a person said, queue a job, run it, publish its events.

A turn resolves its chat (an explicit chat, a channel thread, or a stored chat whose history the
client sent again), stores the user message and an empty assistant message and creates a job, all
in one transaction. The job streams the model's answer as numbered events, checkpoints the answer
while it grows, and stores the result, usage and timings when it ends, failed or not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.engine import Connection

from patchbay.config import JobSettings
from patchbay.core.catalog import Catalog
from patchbay.core.chats import chain_hash, usable_chat
from patchbay.core.llm.registry import Generation, ModelRegistry
from patchbay.errors import (
    InvalidRequest,
    JobNotFound,
    MessageNotFound,
    PatchbayError,
    ProviderTimeout,
    QueueFull,
    StoreUnavailable,
)
from patchbay.ids import new_id
from patchbay.logging import job_id_var
from patchbay.queue.base import EventBus, JobQueue, JobSpec
from patchbay.schemas.chats import MessageRead, Timings, Usage
from patchbay.schemas.jobs import TERMINAL, ErrorInfo, JobEvent, JobRead
from patchbay.schemas.turns import MessageIn, Regenerate, TurnCreate, TurnRead
from patchbay.schemas.users import UserRead
from patchbay.store import chats as chat_rows
from patchbay.store import jobs as job_rows
from patchbay.store.db import Database

logger = logging.getLogger(__name__)

TITLE_LENGTH = 80


@dataclass(slots=True)
class _RunState:
    """A running job's progress: the answer so far, the last event number, the timings."""

    started: float
    started_at: datetime
    seq: int = 1
    last_activity: float = 0.0
    timed_out: bool = False
    ttft: float | None = None
    parts: list[str] = field(default_factory=list)

    @property
    def content(self) -> str:
        return "".join(self.parts)

    def timings(self) -> Timings:
        ttft = None if self.ttft is None else round(self.ttft * 1000, 2)
        return Timings(ttft_ms=ttft, duration_ms=round((time.monotonic() - self.started) * 1000, 2))


@dataclass(frozen=True, slots=True)
class _TurnIds:
    job: str
    user_message: str
    answer: str


@dataclass(slots=True)
class _Context:
    """Where a new user message goes and what the model sees before it."""

    chat_id: str
    parent_id: str | None
    parent_hash: str | None
    history: list[tuple[str, str]]
    new_chat: chat_rows.ChatRecord | None
    rows: list[dict[str, object]]


class TurnEngine:
    def __init__(
        self,
        *,
        db: Database,
        catalog: Catalog,
        registry: ModelRegistry,
        queue: JobQueue,
        bus: EventBus,
        settings: JobSettings,
    ) -> None:
        self._db = db
        self._catalog = catalog
        self._registry = registry
        self._queue = queue
        self._bus = bus
        self._settings = settings

    async def recover(self) -> None:
        """Fail the jobs a previous run of this queue left unfinished, with the reason."""
        count = await self._db.write(
            lambda conn: job_rows.fail_unfinished(
                conn,
                queue=self._queue.name,
                reason="the core restarted while this job was running; send the turn again",
            )
        )
        if count:
            logger.warning("marked %d unfinished jobs from a previous run as failed", count)

    async def start(self, user: UserRead, turn: TurnCreate) -> TurnRead:
        """Store the turn, queue its job and return the ids; the answer arrives as job events."""
        target = await self._catalog.resolve(turn.model)
        if self._queue.depth() >= self._settings.max_depth:
            raise QueueFull("too many turns are waiting; try again shortly")
        # Once stored, a turn must reach the queue even if the caller goes away meanwhile.
        return await asyncio.shield(self._accept(user, turn, target.name))

    async def _accept(self, user: UserRead, turn: TurnCreate, model: str) -> TurnRead:
        now = datetime.now(UTC)
        ids = _TurnIds(job=new_id(), user_message=new_id(), answer=new_id())

        def store(conn: Connection) -> tuple[_Context, str]:
            context = self._context(conn, user, turn, now)
            return context, self._insert_turn(conn, context, user, turn, model, ids, now)

        context, user_hash = await self._db.write(store)
        spec = JobSpec(
            job_id=ids.job,
            user_id=user.id,
            chat_id=context.chat_id,
            message_id=ids.answer,
            model=model,
            messages=(*context.history, ("user", turn.text)),
            prefix_hash=user_hash,
            options=turn.options.model_dump(exclude_none=True),
            stream=turn.stream,
        )
        await self._enqueue(spec, now)
        return TurnRead(
            chat_id=context.chat_id,
            job_id=ids.job,
            user_message_id=ids.user_message,
            assistant_message_id=ids.answer,
            model=model,
        )

    async def _enqueue(self, spec: JobSpec, now: datetime) -> None:
        await self._bus.publish(
            JobEvent(job_id=spec.job_id, seq=1, type="queued", model=spec.model)
        )
        try:
            await self._queue.submit(spec)
        except QueueFull as exc:
            await self._fail(spec, _RunState(started=time.monotonic(), started_at=now), exc)
            raise

    async def regenerate(self, user: UserRead, message_id: str | int, turn: Regenerate) -> TurnRead:
        """Answer a question again: the new answer becomes a sibling of the earlier ones and the
        chat's current branch. `message_id` is the question or one of its answers."""
        async with self._db.connect() as conn:
            earlier = await conn.run_sync(chat_rows.find_message, message_id)
        if earlier is None:
            raise MessageNotFound(f"no message with id {message_id!r}")
        target = await self._catalog.resolve(turn.model or earlier.model)
        if self._queue.depth() >= self._settings.max_depth:
            raise QueueFull("too many turns are waiting; try again shortly")
        return await asyncio.shield(self._accept_again(user, message_id, turn, target.name))

    async def _accept_again(
        self, user: UserRead, message_id: str | int, turn: Regenerate, model: str
    ) -> TurnRead:
        now = datetime.now(UTC)
        job_id, answer_id = new_id(), new_id()

        def store(conn: Connection) -> tuple[str, str, str, list[tuple[str, str]]]:
            question = _question(conn, user, message_id)
            branch = chat_rows.branch(conn, chat_id=question.chat_id, leaf_id=question.id)
            history: list[tuple[str, str]] = [
                (m.role, m.content) for m in branch if m.status == "complete" or m.content
            ]
            answer = chat_rows.message_row(
                id=answer_id,
                chat_id=question.chat_id,
                parent_id=question.id,
                role="assistant",
                content="",
                status="queued",
                now=now,
                model=model,
            )
            chat_rows.insert_messages(conn, [answer])
            job = job_rows.job_row(
                id=job_id,
                chat_id=question.chat_id,
                message_id=answer_id,
                user_id=user.id,
                model=model,
                queue=self._queue.name,
                now=now,
            )
            job_rows.insert_job(conn, job)
            chat_rows.update_chat(
                conn, question.chat_id, current_message_id=answer_id, updated_at=now
            )
            user_hash = chat_rows.prefix_hash_of(conn, question.id) or ""
            return question.chat_id, question.id, user_hash, history

        chat_id, question_id, user_hash, history = await self._db.write(store)
        spec = JobSpec(
            job_id=job_id,
            user_id=user.id,
            chat_id=chat_id,
            message_id=answer_id,
            model=model,
            messages=tuple(history),
            prefix_hash=user_hash,
            options=turn.options.model_dump(exclude_none=True),
            stream=turn.stream,
        )
        await self._enqueue(spec, now)
        return TurnRead(
            chat_id=chat_id,
            job_id=job_id,
            user_message_id=question_id,
            assistant_message_id=answer_id,
            model=model,
        )

    def _insert_turn(
        self,
        conn: Connection,
        context: _Context,
        user: UserRead,
        turn: TurnCreate,
        model: str,
        ids: _TurnIds,
        now: datetime,
    ) -> str:
        """The user message, an empty answer and the job, in the transaction `conn` holds.

        Returns the user message's prefix hash, which the job carries on to the answer's.
        """
        chat_id = context.chat_id
        user_hash = chain_hash(context.parent_hash, "user", turn.text)
        rows = [
            *context.rows,
            chat_rows.message_row(
                id=ids.user_message,
                chat_id=chat_id,
                parent_id=context.parent_id,
                role="user",
                content=turn.text,
                status="complete",
                now=now,
                prefix_hash=user_hash,
                author_id=user.id,
            ),
            chat_rows.message_row(
                id=ids.answer,
                chat_id=chat_id,
                parent_id=ids.user_message,
                role="assistant",
                content="",
                status="queued",
                now=now,
                model=model,
            ),
        ]
        if context.new_chat is not None:
            chat = dataclasses.replace(context.new_chat, current_message_id=ids.answer)
            chat_rows.insert_chat(conn, chat)
        chat_rows.insert_messages(conn, rows)
        job = job_rows.job_row(
            id=ids.job,
            chat_id=chat_id,
            message_id=ids.answer,
            user_id=user.id,
            model=model,
            queue=self._queue.name,
            now=now,
        )
        job_rows.insert_job(conn, job)
        if context.new_chat is None:
            chat_rows.update_chat(conn, chat_id, current_message_id=ids.answer, updated_at=now)
        return user_hash

    def _context(
        self, conn: Connection, user: UserRead, turn: TurnCreate, now: datetime
    ) -> _Context:
        if turn.chat_id is not None:
            usable = usable_chat(conn, user, turn.chat_id)
            return _continue(conn, usable.id, usable.current_message_id)
        if turn.history:
            return _from_history(conn, user, turn, now)
        if turn.thread is not None:
            chat = chat_rows.find_thread_chat(
                conn, owner_id=user.id, channel=turn.channel, thread=turn.thread
            )
            if chat is not None:
                return _continue(conn, chat.id, chat.current_message_id)
        chat = _new_chat(user, turn, now)
        return _Context(chat.id, None, None, [], chat, [])

    async def run(self, job: JobSpec) -> None:
        """Run one job to its end: the queue's handler."""
        job_id_var.set(job.job_id)
        state = _RunState(started=time.monotonic(), started_at=datetime.now(UTC))
        try:
            target = await self._catalog.resolve(job.model)
            generation = await self._registry.start_generation(
                target,
                conversation_id=job.chat_id,
                messages=list(job.messages),
                options=job.options,
                stream=job.stream,
            )
            await self._stream(job, generation, state)
        except PatchbayError as exc:
            await self._fail(job, state, exc)
            return
        except asyncio.CancelledError:
            error = PatchbayError("the core stopped while this job was running; send it again")
            await asyncio.shield(self._fail(job, state, error))
            raise
        await self._complete(job, state, generation)

    async def _stream(self, job: JobSpec, generation: Generation, state: _RunState) -> None:
        checkpoint_at = state.started + self._settings.checkpoint_interval_s
        idle = self._settings.upstream_timeout_s
        this = asyncio.current_task()
        assert this is not None  # noqa: S101 - always inside the queue's task
        watchdog = asyncio.create_task(_watch_idle(state, this, idle))
        try:
            async for delta in generation.deltas():
                now = time.monotonic()
                state.last_activity = now
                if state.ttft is None:
                    state.ttft = now - state.started
                state.parts.append(delta)
                state.seq += 1
                await self._bus.publish(
                    JobEvent.model_construct(
                        job_id=job.job_id, seq=state.seq, type="running", delta=delta
                    )
                )
                if now >= checkpoint_at:
                    checkpoint_at = now + self._settings.checkpoint_interval_s
                    await self._checkpoint(job, state)
        except asyncio.CancelledError as exc:
            if not state.timed_out:
                raise
            this.uncancel()
            raise ProviderTimeout(f"{job.model} sent nothing for {idle:.0f}s") from exc
        finally:
            watchdog.cancel()

    async def _persist(self, job: JobSpec, save: Callable[[Connection], None]) -> None:
        """Store a job's outcome, waiting out a database outage for a while.

        The answer is already made: rather than lose it to a database that is briefly away
        (locked, restarting), try again with backoff; past the limit, say so in the log and let
        the listeners have it anyway.
        """
        delay = 0.25
        deadline = time.monotonic() + self._settings.store_retry_s
        while True:
            try:
                await self._db.write(save)
                return
            except StoreUnavailable:
                if time.monotonic() + delay > deadline:
                    logger.error(
                        "job %s: the database stayed away; its outcome is not stored", job.job_id
                    )
                    return
                logger.warning(
                    "job %s: database unavailable, storing again in %.1fs", job.job_id, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _checkpoint(self, job: JobSpec, state: _RunState) -> None:
        """Save the answer so far, so a crash or a reader sees it grow; skipped while the
        database is unavailable (the final answer is stored with retries)."""
        content = state.content

        def save(conn: Connection) -> None:
            chat_rows.update_message(conn, job.message_id, content=content, status="streaming")
            job_rows.update_job(
                conn, job.job_id, status="running", started_at=state.started_at, attempts=1
            )

        try:
            await self._db.write(save)
        except StoreUnavailable:
            logger.warning("job %s: checkpoint skipped, the database is unavailable", job.job_id)

    async def _complete(self, job: JobSpec, state: _RunState, generation: Generation) -> None:
        content = state.content
        usage = Usage(input_tokens=generation.input_tokens, output_tokens=generation.output_tokens)
        timings = state.timings()
        now = datetime.now(UTC)

        def save(conn: Connection) -> None:
            chat_rows.update_message(
                conn,
                job.message_id,
                content=content,
                status="complete",
                prefix_hash=chain_hash(job.prefix_hash, "assistant", content),
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                ttft_ms=timings.ttft_ms,
                duration_ms=timings.duration_ms,
                updated_at=now,
            )
            job_rows.update_job(
                conn,
                job.job_id,
                status="done",
                started_at=state.started_at,
                finished_at=now,
                attempts=1,
                last_seq=state.seq + 1,
            )

        await self._persist(job, save)
        self._registry.log(generation)
        done = JobEvent(
            job_id=job.job_id,
            seq=state.seq + 1,
            type="done",
            content=content,
            finish_reason=generation.finish_reason,
            usage=usage,
            timings=timings,
            model=job.model,
        )
        await self._bus.publish(done)
        logger.info(
            "job %s done: %s, %s tokens out, %.0f ms",
            job.job_id,
            job.model,
            usage.output_tokens,
            timings.duration_ms or 0,
        )

    async def _fail(self, job: JobSpec, state: _RunState, error: PatchbayError) -> None:
        """Keep the partial answer, marked failed with the reason, and tell the listeners."""
        now = datetime.now(UTC)
        content = state.content

        def save(conn: Connection) -> None:
            chat_rows.update_message(
                conn, job.message_id, content=content, status="failed", error=error.message
            )
            job_rows.update_job(
                conn,
                job.job_id,
                status="failed",
                error=error.message,
                finished_at=now,
                last_seq=state.seq + 1,
            )

        await self._persist(job, save)
        await self._bus.publish(
            JobEvent(
                job_id=job.job_id,
                seq=state.seq + 1,
                type="failed",
                content=state.content,
                error=ErrorInfo(code=error.code, message=error.message, retryable=error.retryable),
                model=job.model,
            )
        )
        logger.warning("job %s failed: %s: %s", job.job_id, error.code, error.message)

    async def job(self, user: UserRead, job_id: str) -> JobRead:
        async with self._db.connect() as conn:
            found = await conn.run_sync(job_rows.find_job, job_id)
        if found is None or found[1] != user.id:
            raise JobNotFound(f"no job with id {job_id!r}")
        return found[0]

    async def events(
        self, user: UserRead, job_id: str, *, after: int = 0
    ) -> AsyncIterator[list[JobEvent]]:
        """A job's events after `after`: replayed, then live; from the store once it is long done."""
        await self.job(user, job_id)
        return self.follow(job_id, after=after)

    async def outcome(self, job_id: str) -> JobEvent:
        """Wait for a job's terminal event (no ownership check)."""
        outcome = None
        async for batch in self.follow(job_id):
            outcome = batch[-1]
        if outcome is None or outcome.type not in TERMINAL:
            raise JobNotFound(f"job {job_id} ended without an outcome")
        return outcome

    async def follow(self, job_id: str, *, after: int = 0) -> AsyncIterator[list[JobEvent]]:
        """Batches of events of a job the caller may see (no ownership check)."""
        if self._bus.knows(job_id):
            async for batch in self._bus.subscribe(job_id, after=after):
                yield batch
            return
        stored = await self._stored_outcome(job_id, after)
        if stored is not None and stored.seq > after:
            yield [stored]

    async def _stored_outcome(self, job_id: str, after: int) -> JobEvent | None:
        """The terminal event of a job whose events are no longer in memory, from the store.

        Its number is the one the live event had, so a client that saw it gets nothing twice; a job
        that ended without one (failed by recovery) ends with the next number the client expects.
        """
        async with self._db.connect() as conn:
            found = await conn.run_sync(job_rows.find_job, job_id)
            message = (
                None
                if found is None
                else await conn.run_sync(chat_rows.find_message, found[0].message_id)
            )
        if found is None or message is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        job, _owner, last_seq = found
        if last_seq is None and job.status not in TERMINAL:
            return None  # queued or running in a process whose events this one cannot see
        seq = after + 1 if last_seq is None else last_seq
        if job.status == "done":
            return JobEvent(
                job_id=job_id,
                seq=seq,
                type="done",
                content=message.content,
                finish_reason="stop",
                usage=message.usage,
                timings=message.timings,
                model=job.model,
            )
        reason = job.error or "this job's events are gone; its process stopped"
        return JobEvent(
            job_id=job_id,
            seq=seq,
            type="cancelled" if job.status == "cancelled" else "failed",
            content=message.content,
            error=ErrorInfo(code="job_failed", message=reason),
            model=job.model,
        )


async def _watch_idle(state: _RunState, task: asyncio.Task[object], idle_s: float) -> None:
    """Cancel `task` once the model has sent nothing for `idle_s` (one timer per job, not per token)."""
    state.last_activity = time.monotonic()
    while True:
        remaining = state.last_activity + idle_s - time.monotonic()
        if remaining <= 0:
            state.timed_out = True
            task.cancel()
            return
        await asyncio.sleep(remaining)


def _question(conn: Connection, user: UserRead, message_id: str | int) -> MessageRead:
    """The user message to answer again, given it or one of its answers."""
    message = chat_rows.find_message(conn, message_id)
    if message is None:
        raise MessageNotFound(f"no message with id {message_id!r}")
    usable_chat(conn, user, message.chat_id)
    if message.role == "assistant" and message.parent_id is not None:
        question = chat_rows.find_message(conn, message.parent_id)
        if question is not None and question.role == "user":
            return question
    if message.role == "user":
        return message
    raise InvalidRequest("only an answer, or the message it answers, can be answered again")


def _continue(conn: Connection, chat_id: str, leaf_id: str | None) -> _Context:
    branch = chat_rows.branch(conn, chat_id=chat_id, leaf_id=leaf_id)
    parent_hash = chat_rows.prefix_hash_of(conn, leaf_id) if leaf_id else None
    return _Context(
        chat_id=chat_id,
        parent_id=leaf_id,
        parent_hash=parent_hash,
        history=[(m.role, m.content) for m in branch if m.status == "complete" or m.content],
        new_chat=None,
        rows=[],
    )


def _from_history(conn: Connection, user: UserRead, turn: TurnCreate, now: datetime) -> _Context:
    """Continue the stored chat this history ends (its last answer), or store it as a new chat."""
    history = turn.history or []
    hashes: list[str] = []
    for message in history:
        hashes.append(chain_hash(hashes[-1] if hashes else None, message.role, message.content))
    pairs: list[tuple[str, str]] = [(m.role, m.content) for m in history]
    if history[-1].role == "assistant":
        found = chat_rows.find_prefix(conn, owner_id=user.id, prefix_hash=hashes[-1])
        if found is not None:
            chat_id, message_id = found
            return _Context(chat_id, message_id, hashes[-1], pairs, None, [])
    chat = _new_chat(user, turn, now)
    rows = _history_rows(chat.id, history, hashes, now)
    return _Context(chat.id, str(rows[-1]["id"]), hashes[-1], pairs, chat, rows)


def _history_rows(
    chat_id: str, history: list[MessageIn], hashes: list[str], now: datetime
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    parent: str | None = None
    for message, prefix in zip(history, hashes, strict=True):
        message_id = new_id()
        rows.append(
            chat_rows.message_row(
                id=message_id,
                chat_id=chat_id,
                parent_id=parent,
                role=message.role,
                content=message.content,
                status="complete",
                now=now,
                prefix_hash=prefix,
            )
        )
        parent = message_id
    return rows


def _new_chat(user: UserRead, turn: TurnCreate, now: datetime) -> chat_rows.ChatRecord:
    title = " ".join(turn.text.split())[:TITLE_LENGTH] or None
    return chat_rows.ChatRecord(
        id=new_id(),
        number=None,
        owner_id=user.id,
        title=title,
        channel=turn.channel,
        thread=turn.thread,
        model=turn.model,
        current_message_id=None,
        created_at=now,
        updated_at=now,
    )
