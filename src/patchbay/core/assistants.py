"""Named assistants: templates stored once and used by name from any channel; admins manage them.
A template's stream becomes the model's messages here."""

from __future__ import annotations

from patchbay.core.users import require_admin
from patchbay.errors import InvalidRequest
from patchbay.queue.base import PromptMessage
from patchbay.schemas.assistants import (
    PLACEHOLDER,
    PREVIOUS,
    QUERY,
    AssistantCreate,
    AssistantRead,
    AssistantUpdate,
    StreamTemplate,
    TemplateMessage,
    fill,
)
from patchbay.schemas.users import UserRead
from patchbay.store import assistants as rows
from patchbay.store.db import Database

MODEL_PREFIX = "assistant:"  # a model id that names a stored assistant, for any channel


class AssistantService:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, actor: UserRead, data: AssistantCreate) -> AssistantRead:
        require_admin(actor)
        async with self._db.begin() as conn:
            return await rows.insert_assistant(
                conn, name=data.name, description=data.description, template=data.template
            )

    async def list_assistants(self) -> list[AssistantRead]:
        async with self._db.connect() as conn:
            return await rows.list_assistants(conn)

    async def get(self, name: str) -> AssistantRead:
        async with self._db.connect() as conn:
            return await rows.get_assistant(conn, name)

    async def update(self, actor: UserRead, name: str, data: AssistantUpdate) -> AssistantRead:
        require_admin(actor)
        values: dict[str, object] = {}
        if data.description is not None:
            values["description"] = data.description
        if data.template is not None:
            values["template"] = data.template.model_dump(mode="json", exclude_none=True)
        async with self._db.begin() as conn:
            return await rows.update_assistant(conn, name, values)

    async def delete(self, actor: UserRead, name: str) -> None:
        require_admin(actor)
        async with self._db.begin() as conn:
            await rows.delete_assistant(conn, name)


def stream_messages(
    stream: StreamTemplate,
    history: list[PromptMessage],
    *,
    query: PromptMessage,
    previous: str,
) -> list[PromptMessage]:
    """A template stream's messages for the model: placeholders filled, history inserted; the
    query's files go with each message that holds the query."""
    values = {QUERY: query.text, PREVIOUS: previous}
    messages: list[PromptMessage] = []
    for message in stream.messages:
        if isinstance(message, TemplateMessage):
            files = query.files if QUERY in PLACEHOLDER.findall(message.content) else ()
            messages.append(PromptMessage(message.role, fill(message.content, values), files))
        else:
            messages.extend(history)
    if not messages:
        raise InvalidRequest("the assistant's stream gives the model nothing to answer")
    return messages
