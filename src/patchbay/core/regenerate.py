"""Regenerating: a question answered again. The new answer is stored empty beside the earlier ones,
as the chat's current branch, and its job queued as a turn's is (see `turns`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy.engine import Connection

from patchbay.core.attachments import Said
from patchbay.core.llm.registry import ModelTarget
from patchbay.core.placement import question_of, said_hash, said_in, usable_message
from patchbay.core.turn_deps import TurnDeps
from patchbay.ids import new_id
from patchbay.queue.base import JobSpec, refuse_when_full
from patchbay.schemas.chats import MessageRead
from patchbay.schemas.turns import Regenerate, TurnRead, regenerates_of
from patchbay.schemas.users import UserRead
from patchbay.store import chats as chat_rows
from patchbay.store import jobs as job_rows
from patchbay.store.deliveries import claim_delivery

Enqueue = Callable[[JobSpec, datetime], Awaitable[None]]


class Regenerations:
    def __init__(self, deps: TurnDeps, *, enqueue: Enqueue) -> None:
        self._deps = deps
        self._enqueue = enqueue

    async def regenerate(self, user: UserRead, message_id: str | int, turn: Regenerate) -> TurnRead:
        """Answer a question again: the new answer becomes a sibling of the earlier ones and the
        chat's current branch. `message_id` is the question or one of its answers.

        Raises `DuplicateDelivery`, naming the first one's job, for a `delivery_id` given before.
        """
        async with self._deps.db.connect() as conn:
            earlier = await conn.run_sync(usable_message, user, message_id)
            # The assistant that made the answer answers again, unless a model is asked for.
            answered: list[MessageRead] = []
            if not turn.model and earlier.role == "assistant":
                answered = [earlier]
            elif not turn.model:
                answered = await conn.run_sync(chat_rows.answers_to, earlier.id)
        template = answered[-1].assistant if answered else None
        targets = await self._deps.catalog.targets(turn.model or earlier.model, template)
        refuse_when_full(self._deps.queue, self._deps.settings.max_depth)
        return await asyncio.shield(self._accept_again(user, message_id, turn, targets, template))

    async def _accept_again(
        self,
        user: UserRead,
        message_id: str | int,
        turn: Regenerate,
        targets: list[ModelTarget],
        template: dict[str, object] | None,
    ) -> TurnRead:
        model = targets[-1].name
        now = datetime.now(UTC)
        job_id, answer_id = new_id(), new_id()

        def store(conn: Connection) -> tuple[str, str, str, list[Said]]:
            question = question_of(conn, user, message_id)
            branch = chat_rows.branch(conn, chat_id=question.chat_id, leaf_id=question.id)
            history = said_in(branch)
            answer = chat_rows.message_row(
                id=answer_id,
                chat_id=question.chat_id,
                parent_id=question.id,
                role="assistant",
                content="",
                status="queued",
                now=now,
                model=model,
                metadata=None if template is None else {"assistant": template},
            )
            chat_rows.insert_messages(conn, [answer])
            job = job_rows.job_row(
                id=job_id,
                chat_id=question.chat_id,
                message_id=answer_id,
                user_id=user.id,
                model=model,
                queue=self._deps.queue.name,
                now=now,
            )
            job_rows.insert_job(conn, job)
            chat_rows.update_chat(
                conn, question.chat_id, current_message_id=answer_id, updated_at=now
            )
            if turn.delivery_id is not None:  # asked before: all of it rolls back
                claim_delivery(
                    conn,
                    user_id=user.id,
                    channel=regenerates_of(turn.channel),
                    delivery_id=turn.delivery_id,
                    message_id=question.id,
                    job_id=job_id,
                    now=now,
                )
            user_hash = chat_rows.prefix_hash_of(conn, question.id) or said_hash(history) or ""
            return question.chat_id, question.id, user_hash, history

        chat_id, question_id, user_hash, history = await self._deps.db.write(store)
        spec = await self._deps.job_spec(
            user,
            targets,
            history,
            job_id=job_id,
            chat_id=chat_id,
            answer_id=answer_id,
            model=model,
            prefix_hash=user_hash,
            options=turn.options.model_dump(exclude_none=True),
            stream=turn.stream,
            template=template,
        )
        await self._enqueue(spec, now)
        return TurnRead(
            chat_id=chat_id,
            job_id=job_id,
            user_message_id=question_id,
            assistant_message_id=answer_id,
            model=model,
        )
