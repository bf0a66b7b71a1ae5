"""One handler per instruction type, each a thin call into the same services the REST API uses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from patchbay.core.catalog import Catalog
from patchbay.core.chats import ChatService
from patchbay.core.jobs import JobRunner
from patchbay.core.turns import TurnEngine
from patchbay.core.users import UserService, require_admin
from patchbay.errors import PatchbayError, PermissionDenied
from patchbay.schemas import instructions as ins
from patchbay.schemas.catalog import ModelCreate, ModelUpdate, ProviderCreate, ProviderUpdate
from patchbay.schemas.chats import ChatCreate, ChatUpdate
from patchbay.schemas.jobs import JobEvent
from patchbay.schemas.turns import Regenerate, TurnCreate, TurnRead
from patchbay.schemas.users import UserCreate, UserRead, UserUpdate

Outcome = tuple[str, dict[str, object]]  # a sentence for people, and the data
Handler = Callable[[UserRead, Any], Awaitable[Outcome]]


def _dump(model: BaseModel) -> dict[str, object]:
    return model.model_dump(mode="json")


def api_base_of(endpoint: str) -> str:
    """The base URL (ending in /v1) of an OpenAI-compatible chat completions endpoint."""
    base = endpoint.rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


class Handlers:
    def __init__(
        self,
        *,
        users: UserService,
        chats: ChatService,
        catalog: Catalog,
        turns: TurnEngine,
        jobs: JobRunner,
    ) -> None:
        self.users = users
        self.chats = chats
        self.catalog = catalog
        self.turns = turns
        self.jobs = jobs
        self.table: dict[str, Handler] = {
            "USER_CREATE": self.user_create,
            "USER_UPDATE": self.user_update,
            "USER_DELETE": self.user_delete,
            "USER_LIST": self.user_list,
            "USER_INSTRUCTION_RECORDING_ENABLE": self.recording_enable,
            "USER_INSTRUCTION_RECORDING_DISABLE": self.recording_disable,
            "USER_INSTRUCTION_RECORDING_LIST": self.records_list,
            "USER_INSTRUCTION_RECORDS_LIST": self.records_list,
            "USER_INSTRUCTION_RECORDS_DELETE": self.records_delete,
            "CHAT_CREATE": self.chat_create,
            "CHAT_UPDATE": self.chat_update,
            "CHAT_DELETE": self.chat_delete,
            "CHAT_LOAD": self.chat_load,
            "CHAT_LIST": self.chat_list,
            "LLM_PROVIDER_ADD": self.provider_add,
            "LLM_PROVIDER_UPDATE": self.provider_update,
            "LLM_PROVIDER_DELETE": self.provider_delete,
            "LLM_PROVIDER_LIST": self.provider_list,
            "LLM_ADD": self.llm_add,
            "LLM_UPDATE": self.llm_update,
            "LLM_DELETE": self.llm_delete,
            "LLM_LIST": self.llm_list,
            "LLM_RESPONSE_GENERATE": self.generate,
            "LLM_RESPONSE_REGENERATE": self.regenerate,
        }

    # users

    async def user_create(self, actor: UserRead, data: ins.UserCreateData) -> Outcome:
        user = await self.users.create(
            actor, UserCreate(name=data.username, profile=data.profile, role=data.role)
        )
        return "user created", {"user": _dump(user)}

    async def user_update(self, actor: UserRead, data: ins.UserUpdateData) -> Outcome:
        values = data.model_dump(exclude_unset=True, exclude={"user_id"})
        if "username" in values:
            values["name"] = values.pop("username")
        user = await self.users.update(actor, data.user_id, UserUpdate(**values))
        return "user updated", {"user": _dump(user)}

    async def user_delete(self, actor: UserRead, data: ins.UserRefData) -> Outcome:
        await self.users.delete(actor, data.user_id)
        return "user deleted", {}

    async def user_list(self, actor: UserRead, _data: ins.Nothing) -> Outcome:
        users = await self.users.list_users(actor)
        return f"{len(users)} users", {"users": [_dump(u) for u in users]}

    async def _recording(self, actor: UserRead, data: ins.OptionalUserData, on: bool) -> UserRead:
        update = UserUpdate(instruction_recording=on)
        return await self.users.update(actor, data.user_id or actor.id, update)

    async def recording_enable(self, actor: UserRead, data: ins.OptionalUserData) -> Outcome:
        user = await self._recording(actor, data, True)
        return "instruction recording enabled", {"user": _dump(user)}

    async def recording_disable(self, actor: UserRead, data: ins.OptionalUserData) -> Outcome:
        user = await self._recording(actor, data, False)
        return "instruction recording disabled", {"user": _dump(user)}

    async def records_list(self, actor: UserRead, data: ins.RecordListData) -> Outcome:
        records = await self.users.records(
            actor, data.user_id or actor.id, limit=data.limit, before=data.before
        )
        return f"{len(records)} instruction records", {"records": [_dump(r) for r in records]}

    async def records_delete(self, actor: UserRead, data: ins.OptionalUserData) -> Outcome:
        deleted = await self.users.delete_records(actor, data.user_id or actor.id)
        return f"{deleted} instruction records deleted", {"deleted": deleted}

    # chats

    async def chat_create(self, actor: UserRead, data: ins.ChatCreateData) -> Outcome:
        members = [*data.usernames, *(str(ref) for ref in data.user_ids)]
        chat = await self.chats.create(
            actor, ChatCreate(title=data.title, members=members, model=data.model)
        )
        return "chat created", {"chat": _dump(chat)}

    async def chat_update(self, actor: UserRead, data: ins.ChatUpdateData) -> Outcome:
        values = data.model_dump(exclude_unset=True, exclude={"chat_id"})
        if "usernames" in values:
            values["members"] = values.pop("usernames")
        if values.get("current_message_id") is not None:
            values["current_message_id"] = str(values["current_message_id"])
        chat = await self.chats.update(actor, data.chat_id, ChatUpdate(**values))
        return "chat updated", {"chat": _dump(chat)}

    async def chat_delete(self, actor: UserRead, data: ins.ChatRefData) -> Outcome:
        await self.chats.delete(actor, data.chat_id)
        return "chat deleted", {}

    async def chat_load(self, actor: UserRead, data: ins.ChatRefData) -> Outcome:
        chat = await self.chats.get(actor, data.chat_id)
        messages = await self.chats.messages(actor, chat.id)
        return "chat loaded", {"chat": _dump(chat), "messages": [_dump(m) for m in messages]}

    async def chat_list(self, actor: UserRead, data: ins.ChatListData) -> Outcome:
        if data.user_id is not None:
            whose = await self.users.get(actor, data.user_id)
            chats = await self.chats.list_chats(whose, limit=data.limit, before=data.before)
        else:
            chats = await self.chats.list_chats(
                actor, limit=data.limit, before=data.before, every_user=True
            )
        return f"{len(chats)} chats", {"chats": [_dump(c) for c in chats]}

    # providers and models

    async def provider_add(self, actor: UserRead, data: ins.ProviderAddData) -> Outcome:
        require_admin(actor)
        endpoint = data.api_base or data.api_endpoint
        provider = await self.catalog.add_provider(
            ProviderCreate(
                name=data.name,
                kind=data.kind,
                api_base=api_base_of(endpoint) if endpoint else None,
                api_key=data.api_key,
                api_key_env=data.api_key_env,
                options=data.options,
            )
        )
        return "provider added", {"provider": _dump(provider)}

    async def provider_update(self, actor: UserRead, data: ins.ProviderUpdateData) -> Outcome:
        require_admin(actor)
        values = data.model_dump(exclude_unset=True, exclude={"name", "api_endpoint"})
        endpoint = data.api_base or data.api_endpoint
        if endpoint:
            values["api_base"] = api_base_of(endpoint)
        provider = await self.catalog.update_provider(data.name, ProviderUpdate(**values))
        return "provider updated", {"provider": _dump(provider)}

    async def provider_delete(self, actor: UserRead, data: ins.ProviderRefData) -> Outcome:
        require_admin(actor)
        await self.catalog.delete_provider(data.name)
        return "provider deleted", {}

    async def provider_list(self, actor: UserRead, _data: ins.Nothing) -> Outcome:
        require_admin(actor)
        providers = await self.catalog.list_providers()
        return f"{len(providers)} providers", {"providers": [_dump(p) for p in providers]}

    async def llm_add(self, actor: UserRead, data: ins.LlmAddData) -> Outcome:
        require_admin(actor)
        model = await self.catalog.add_model(
            ModelCreate(
                name=data.name or data.llm_name,
                provider=data.provider_name,
                upstream_model=data.llm_name,
                options=data.options,
                is_default=data.is_default,
            )
        )
        return "LLM added", {"llm": _dump(model)}

    async def llm_update(self, actor: UserRead, data: ins.LlmUpdateData) -> Outcome:
        require_admin(actor)
        name = await self.catalog.model_name(data.provider_name, data.llm_name)
        values = data.model_dump(exclude_unset=True, exclude={"llm_name", "provider_name"})
        model = await self.catalog.update_model(name, ModelUpdate(**values))
        return "LLM updated", {"llm": _dump(model)}

    async def llm_delete(self, actor: UserRead, data: ins.LlmRefData) -> Outcome:
        require_admin(actor)
        await self.catalog.delete_model(
            await self.catalog.model_name(data.provider_name, data.llm_name)
        )
        return "LLM deleted", {}

    async def llm_list(self, _actor: UserRead, data: ins.LlmListData) -> Outcome:
        models = await self.catalog.list_models()
        if data.provider_name is not None:
            models = [m for m in models if m.provider == data.provider_name]
        return f"{len(models)} LLMs", {"llms": [_dump(m) for m in models]}

    # answers

    async def generate(self, actor: UserRead, data: ins.GenerateData) -> Outcome:
        speaker = await self._speaker(actor, data)
        created = await self.turns.start(speaker, await self._turn(data))
        return await self._answer(speaker, created, ins.GENERATED)

    async def start_owed(
        self, actor: UserRead, data: ins.GenerateData, owed: ins.OwedStart, ref: str | None
    ) -> Outcome:
        """Store a generate's turn with its answer owed to the bridge that asked (see
        `ins.OwedStart`), without waiting for the answer. Its `reply` keeps what the bridge needs
        to make the envelope then: the instruction's type and `id`, and who speaks; the 202's data
        holds it, the speaker and the turn."""
        speaker = await self._speaker(actor, data)
        instruction = {"type": ins.GENERATE, "id": ref, "user_id": speaker.id}
        turn = await self._turn(
            data,
            delivery_id=owed.delivery_id,
            reply={**owed.reply, "instruction": instruction},
            reply_holder=owed.holder,
        )
        created = await self.turns.start(speaker, turn)
        return "response owed", {"user_id": speaker.id, "turn": _dump(created), "reply": turn.reply}

    async def _speaker(self, actor: UserRead, data: ins.GenerateData) -> UserRead:
        """The caller, or the user an admin speaks for."""
        if data.user_id is None:
            return actor
        speaker = await self.users.get(actor, data.user_id)
        if speaker.id != actor.id and actor.role != "admin":
            raise PermissionDenied("only an admin may speak for another user")
        return speaker

    async def _turn(self, data: ins.GenerateData, **owed: Any) -> TurnCreate:
        model = None
        if data.llm_name is not None:
            model = await self.catalog.model_name(data.provider_name, data.llm_name)
        return TurnCreate(
            channel="instructions",
            chat_id=None if data.chat_id is None else str(data.chat_id),
            text=data.user_input,
            model=model,
            options=data.options,
            stream=False,
            **owed,
        )

    async def regenerate(self, actor: UserRead, data: ins.RegenerateData) -> Outcome:
        model = None
        if data.llm_name is not None:
            model = await self.catalog.model_name(data.provider_name, data.llm_name)
        again = Regenerate(model=model, options=data.options, stream=False)
        created = await self.turns.regenerate(actor, data.message_id, again)
        return await self._answer(actor, created, "response regenerated")

    async def _answer(self, user: UserRead, created: TurnRead, done: str) -> Outcome:
        outcome = await self.jobs.outcome(created.job_id)
        if outcome.type != "done":
            raise _failure(outcome)
        messages = {m.id: m for m in await self.chats.messages(user, created.chat_id)}
        return done, ins.generated_data(
            chat_id=created.chat_id,
            job_id=created.job_id,
            text=outcome.content,
            question=messages.get(created.user_message_id),
            answer=messages.get(created.assistant_message_id),
        )


def _failure(outcome: JobEvent) -> PatchbayError:
    error = PatchbayError(outcome.error.message if outcome.error else "the generation failed")
    if outcome.error is not None:
        error.code, error.retryable = outcome.error.code, outcome.error.retryable
    error.status = 502
    return error
