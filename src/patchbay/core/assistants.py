"""Named assistants: templates stored once and used by name from any channel; admins manage them."""

from __future__ import annotations

from patchbay.core.users import require_admin
from patchbay.schemas.assistants import AssistantCreate, AssistantRead, AssistantUpdate
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
