"""What turns, regenerations and waiting turns are built with (`TurnDeps`), and the one place the
`JobSpec` of an answer any of them queues is made."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from patchbay.config import JobSettings
from patchbay.core.attachments import Said
from patchbay.core.catalog import Catalog
from patchbay.core.jobs import JobRunner
from patchbay.core.llm.registry import ModelTarget
from patchbay.queue.base import JobQueue, JobSpec, PromptMessage
from patchbay.schemas.users import UserRead
from patchbay.store.db import Database

Prompt = Callable[[UserRead, list[ModelTarget], list[Said]], Awaitable[tuple[PromptMessage, ...]]]


@dataclass(frozen=True, slots=True)
class TurnDeps:
    """The store, catalog, queue, job runner, job settings and prompt maker they share."""

    db: Database
    catalog: Catalog
    queue: JobQueue
    jobs: JobRunner
    settings: JobSettings
    prompt: Prompt

    async def job_spec(
        self,
        user: UserRead,
        targets: list[ModelTarget],
        said: list[Said],
        *,
        job_id: str,
        chat_id: str,
        answer_id: str,
        model: str,
        prefix_hash: str,
        options: dict[str, object],
        stream: bool,
        template: dict[str, object] | None,
    ) -> JobSpec:
        """The job making the answer `answer_id` to `said` (its question last): its messages
        are `said` made into the prompt the `targets` take."""
        return JobSpec(
            job_id=job_id,
            user_id=user.id,
            chat_id=chat_id,
            message_id=answer_id,
            model=model,
            messages=await self.prompt(user, targets, said),
            prefix_hash=prefix_hash,
            options=options,
            stream=stream,
            template=template,
        )
