"""The turn engine: store what a person said and queue its job.

A turn finds its place (see `placement`), then stores the user message, an empty assistant message
and the job, all in one transaction, and queues the job; `jobs.JobRunner` runs it. A regenerated
answer (`regenerate`) and a turn that waits behind its chat's answer (`waiting`) are queued the
same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Connection

from patchbay.config import JobSettings
from patchbay.core.assistants import MODEL_PREFIX, AssistantService
from patchbay.core.attachments import AttachmentStore, Said, Upload, decode
from patchbay.core.catalog import Catalog
from patchbay.core.chats import chain_hash
from patchbay.core.jobs import JobRunner, RunState
from patchbay.core.llm.registry import ModelRegistry, ModelTarget
from patchbay.core.placement import (
    Placement,
    history_hashes,
    place,
    stored_history,
)
from patchbay.core.regenerate import Regenerations
from patchbay.core.turn_deps import TurnDeps
from patchbay.core.waiting import WaitingTurns
from patchbay.errors import InvalidRequest, QueueFull
from patchbay.ids import new_id
from patchbay.queue.base import JobQueue, JobSpec, PromptMessage, refuse_when_full
from patchbay.schemas.assistants import AssistantTemplate
from patchbay.schemas.chats import AttachmentRead
from patchbay.schemas.jobs import TERMINAL, JobEvent, JobRead
from patchbay.schemas.turns import Regenerate, TurnCreate, TurnRead
from patchbay.schemas.users import UserRead
from patchbay.store import chats as chat_rows
from patchbay.store import jobs as job_rows
from patchbay.store.db import Database
from patchbay.store.deliveries import claim_delivery, taken_delivery

CANCEL_WAIT_S = 5.0  # how long DELETE waits for a cancelled job to have stored its outcome


@dataclass(frozen=True, slots=True)
class _TurnIds:
    job: str
    user_message: str
    answer: str


class TurnEngine:
    def __init__(
        self,
        *,
        db: Database,
        catalog: Catalog,
        queue: JobQueue,
        jobs: JobRunner,
        registry: ModelRegistry,
        assistants: AssistantService,
        attachments: AttachmentStore,
        settings: JobSettings,
    ) -> None:
        self._registry = registry
        self._attachments = attachments
        self._assistants = assistants
        self._deps = TurnDeps(db, catalog, queue, jobs, settings, self._prompt)
        self.waiting = WaitingTurns(self._deps)
        self._again = Regenerations(self._deps, enqueue=self._enqueue)

    async def start(
        self, user: UserRead, turn: TurnCreate, uploads: list[Upload] | None = None
    ) -> TurnRead:
        """Store the turn, queue its job and return the ids; the answer arrives as job events.

        Its attachments (and `uploads`, files sent as multipart) are turned into text first, but
        for those the model reads itself.
        """
        template = await self._template(turn)
        # every model must exist (each stream's, for a template) before the turn is accepted
        targets = await self._deps.catalog.targets(turn.model, template)
        refuse_when_full(self._deps.queue, self._deps.settings.max_depth)
        template_json = None if template is None else template.model_dump(mode="json")
        files = [decode(a, f"attachments[{i}]") for i, a in enumerate(turn.attachments)]
        files += uploads or []
        with_files = files or any(m.attachments for m in turn.history or [])
        if with_files and turn.delivery_id is not None:
            await self._refuse_taken(user, turn.channel, turn.delivery_id)
        attached = []
        if files:
            native = await self._native(targets)
            attached = await self._attachments.accept(user, files, native=native)
        history_files = await self._history_files(user, turn, targets)
        # Once stored, a turn must reach the queue even if the caller goes away meanwhile.
        return await asyncio.shield(
            self._accept(user, turn, targets, template_json, attached, history_files)
        )

    async def _refuse_taken(self, user: UserRead, channel: str, delivery_id: str) -> None:
        """Refuse a delivery taken before now, not after reading its files again (a mail server
        retrying a mail with a scan would have it read once per try). Storing the turn checks
        again, so two copies at once still make one turn."""
        async with self._deps.db.connect() as conn:
            taken = await conn.run_sync(
                lambda sync: taken_delivery(
                    sync, user_id=user.id, channel=channel, delivery_id=delivery_id
                )
            )
        if taken is not None:
            raise taken

    async def _history_files(
        self, user: UserRead, turn: TurnCreate, targets: list[ModelTarget]
    ) -> list[list[AttachmentRead]]:
        """The files of each message of a history patchbay has not stored, kept and made text as
        a turn's are; none when the history continues a stored chat, which has its own (so a
        continued conversation's files are not read again on every turn)."""
        history = turn.history or []
        if not any(m.attachments for m in history):
            return []
        hashes = history_hashes(history)
        async with self._deps.db.connect() as conn:
            if await conn.run_sync(stored_history, user, history, hashes) is not None:
                return []
        native = await self._native(targets)
        accepted = []
        for index, message in enumerate(history):
            where = f"history[{index}].attachments"
            uploads = [decode(a, f"{where}[{i}]") for i, a in enumerate(message.attachments)]
            accepted.append(
                await self._attachments.accept(user, uploads, native=native, where=where)
            )
        return accepted

    async def _native(self, targets: list[ModelTarget]) -> frozenset[str]:
        """The media types every model of the turn reads itself."""
        kinds = [await self._registry.accepted_media(target) for target in targets]
        return frozenset.intersection(*kinds)

    async def _prompt(
        self, user: UserRead, targets: list[ModelTarget], conversation: list[Said]
    ) -> tuple[PromptMessage, ...]:
        """The job's messages: files go as they are to models that read them, else as text."""
        if not any(files for _role, _text, files in conversation):
            return await self._attachments.prompt_messages(conversation, native=frozenset())
        native = await self._native(targets)
        conversation = await self._attachments.with_text(user, conversation, native=native)
        return await self._attachments.prompt_messages(conversation, native=native)

    async def _template(self, turn: TurnCreate) -> AssistantTemplate | None:
        """The assistant template a turn asks for: given, named, or named as its model."""
        name = turn.assistant_name
        if name is None and turn.model and turn.model.startswith(MODEL_PREFIX):
            name = turn.model.removeprefix(MODEL_PREFIX)
        if turn.assistant is not None and name is not None:
            raise InvalidRequest("give an assistant or an assistant's name, not both")
        if name is not None:
            return (await self._assistants.get(name)).template
        return turn.assistant

    async def _accept(
        self,
        user: UserRead,
        turn: TurnCreate,
        targets: list[ModelTarget],
        template: dict[str, object] | None,
        attached: list[AttachmentRead],
        history_files: list[list[AttachmentRead]],
    ) -> TurnRead:
        model = targets[-1].name
        now = datetime.now(UTC)
        ids = _TurnIds(job=new_id(), user_message=new_id(), answer=new_id())

        def store(conn: Connection) -> tuple[Placement, str, str | None]:
            context = place(conn, user, turn, now, history_files)
            ahead = None
            if turn.queue_behind and context.parent_id is not None:
                ahead = job_rows.last_unfinished_of(conn, [context.parent_id])
            hash_ = self._insert_turn(
                conn,
                context,
                user,
                turn,
                model,
                ids,
                now,
                attached,
                template=template,
                waiting=ahead is not None,
            )
            if turn.delivery_id is not None:  # delivered before: all of it rolls back
                claim_delivery(
                    conn,
                    user_id=user.id,
                    channel=turn.channel,
                    delivery_id=turn.delivery_id,
                    message_id=ids.user_message,
                    job_id=ids.job,
                    now=now,
                    reply=turn.reply,
                    holder=turn.reply_holder,
                )
            return context, hash_, ahead

        context, user_hash, ahead = await self._deps.db.write(store)
        read = TurnRead(
            chat_id=context.chat_id,
            job_id=ids.job,
            user_message_id=ids.user_message,
            assistant_message_id=ids.answer,
            model=model,
        )
        if ahead is not None:
            await self._tell_queued(ids.job, model)  # its place in the queue is not known yet
            self.waiting.behind(ahead, ids.job)
            return read
        conversation = [*context.history, ("user", turn.text, attached)]
        spec = await self._deps.job_spec(
            user,
            targets,
            conversation,
            job_id=ids.job,
            chat_id=context.chat_id,
            answer_id=ids.answer,
            model=model,
            prefix_hash=user_hash,
            options=turn.options.model_dump(exclude_none=True),
            stream=turn.stream,
            template=template,
        )
        await self._enqueue(spec, now)
        return read

    async def cancel(self, user: UserRead, job_id: str) -> JobRead:
        """Stop a queued or running job of `user`'s; it ends as cancelled, keeping its answer so
        far. A job that has ended already is left as it is."""
        job = await self._deps.jobs.job(user, job_id)
        if job.status in TERMINAL:
            return job
        if await self._deps.jobs.cancel_if_queued(job_id, job.model):
            await self.waiting.stopped(job_id)  # a waiting job being queued is not, then
            await self._deps.queue.cancel(job_id)  # free its place in an in-process queue
        elif await self._deps.queue.cancel(job_id):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._deps.jobs.outcome(job_id), CANCEL_WAIT_S)
        else:  # no process can be running it (an in-process queue that restarted)
            await self._deps.jobs.cancel_orphan(job_id, job.model)
        return await self._deps.jobs.job(user, job_id)

    async def _enqueue(self, spec: JobSpec, now: datetime) -> None:
        """Tell the job queued, and queue it."""
        await self._tell_queued(spec.job_id, spec.model, self._deps.queue.depth())
        try:
            await self._deps.queue.submit(spec)
        except QueueFull as exc:
            await self._deps.jobs.fail(
                spec, RunState(started=time.monotonic(), started_at=now), exc
            )
            raise

    async def regenerate(self, user: UserRead, message_id: str | int, turn: Regenerate) -> TurnRead:
        """Answer a question again (see `Regenerations.regenerate`)."""
        return await self._again.regenerate(user, message_id, turn)

    async def _tell_queued(self, job_id: str, model: str, position: int | None = None) -> None:
        await self._deps.jobs.publish(
            JobEvent(job_id=job_id, seq=1, type="queued", model=model, position=position)
        )

    def _insert_turn(
        self,
        conn: Connection,
        context: Placement,
        user: UserRead,
        turn: TurnCreate,
        model: str,
        ids: _TurnIds,
        now: datetime,
        attached: list[AttachmentRead],
        *,
        template: dict[str, object] | None,
        waiting: bool = False,
    ) -> str:
        """The user message, an empty answer (with the template that will make it, if one
        will) and the job, in the transaction `conn` holds.

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
                attachments=[a.model_dump() for a in attached],
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
                metadata=None if template is None else {"assistant": template},
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
            queue=self._deps.queue.name,
            now=now,
        )
        if waiting:  # queued later, perhaps by another core: what it runs with is kept with it
            options = turn.options.model_dump(exclude_none=True)
            job.update(job_rows.waiting_row(options=options, stream=turn.stream))
        job_rows.insert_job(conn, job)
        if context.new_chat is None:
            chat_rows.update_chat(conn, chat_id, current_message_id=ids.answer, updated_at=now)
        return user_hash
