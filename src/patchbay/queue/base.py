"""The ports the turn engine depends on: a job queue and a bus for job events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from patchbay.errors import QueueFull
from patchbay.schemas.jobs import JobEvent


@dataclass(frozen=True, slots=True)
class PromptFile:
    """A file the model may read itself; `text` is what it reads in its place when it cannot."""

    media_type: str
    data: bytes
    text: str


class PromptMessage(NamedTuple):
    """One message for the model: its text (with the text of files it does not read itself) and
    the files it does."""

    role: str
    text: str
    files: tuple[PromptFile, ...] = ()


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything a worker needs to run one generation, with the context frozen at turn time."""

    job_id: str
    user_id: str
    chat_id: str
    message_id: str  # the assistant message the job fills
    model: str
    messages: tuple[PromptMessage, ...]  # oldest first; the last is the prompt
    prefix_hash: str  # of the conversation up to the prompt
    options: dict[str, object] = field(default_factory=dict)
    stream: bool = True  # ask the model for tokens as they come
    # An assistant template (JSON): its streams run in turn, the last one answers; then
    # `messages` holds the history and, last, the person's query.
    template: dict[str, object] | None = None


JobHandler = Callable[[JobSpec], Awaitable[None]]
CancelHook = Callable[[str], None]  # told a job's id before its task is interrupted by its owner


class JobQueue(Protocol):
    name: str

    async def start(self, handler: JobHandler, on_cancel: CancelHook | None = None) -> None:
        """Begin running submitted jobs with `handler` (workers; a core on RabbitMQ only submits)."""

    async def submit(self, job: JobSpec) -> None:
        """Queue a job, or raise `QueueFull` (retryable) when the queue is at its maximum depth."""

    def depth(self) -> int:
        """Jobs submitted and not yet started."""

    async def cancel(self, job_id: str) -> bool:
        """Interrupt a waiting or running job wherever it runs (its handler then ends it as
        cancelled); False when no process can be holding it."""

    async def close(self, grace_s: float) -> None:
        """Stop taking jobs, give running ones `grace_s` to finish, then cancel the rest."""


class EventBus(Protocol):
    async def publish(self, event: JobEvent) -> None:
        """Deliver an event to every listener of its job, in sequence order."""

    def subscribe(self, job_id: str, *, after: int = 0) -> AsyncIterator[list[JobEvent]]:
        """Every event of the job with `seq > after`, then the live ones, until a terminal event.

        Events come in batches of those that are ready together, so a listener that forwards
        them pays once per batch, not once per token. Ends at once when the bus holds nothing
        for the job (unknown, or finished long ago).
        """

    def knows(self, job_id: str) -> bool:
        """Whether the bus holds events for this job."""

    async def until_known(self, job_id: str, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the bus to hold events of the job; whether it does."""


def refuse_when_full(queue: JobQueue, max_depth: int) -> None:
    """Raise `QueueFull` for a new turn while `max_depth` jobs wait in `queue`: checked before
    a turn is stored, so a refused one leaves nothing behind."""
    if queue.depth() >= max_depth:
        raise QueueFull("too many turns are waiting; try again shortly")
