"""Instructions (seed 003): `{"type": ..., "data": {...}}` in, an envelope out, over HTTP or RabbitMQ.

Each instruction type has a data model here. Ids are accepted as patchbay ids or as the short
numbers seed 003's clients use (`"chat_id": 1`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from patchbay.schemas.catalog import NAME_PATTERN, ProviderKind
from patchbay.schemas.chats import MessageRead
from patchbay.schemas.options import MAX_TEXT, GenerationOptions
from patchbay.schemas.turns import MAX_DELIVERY_ID
from patchbay.schemas.users import NAME_PATTERN as USERNAME_PATTERN
from patchbay.schemas.users import Profile, Role

Ref = int | str  # an id, or a short number
MAX_BATCH = 100
# A bridge's ask (JSON `OwedStart`, with the module token) that a generate be answered later.
OWED_HEADER = "X-Patchbay-Owed"
GENERATE = "LLM_RESPONSE_GENERATE"
GENERATED = "response generated"


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Nothing(_Data):
    pass


class UserCreateData(_Data):
    username: str = Field(pattern=USERNAME_PATTERN)
    profile: Profile = {}
    role: Role = "user"


class UserUpdateData(_Data):
    user_id: Ref
    username: str | None = Field(default=None, pattern=USERNAME_PATTERN)
    profile: Profile | None = None
    role: Role | None = None


class UserRefData(_Data):
    user_id: Ref


class OptionalUserData(_Data):
    user_id: Ref | None = None  # default: the caller


class RecordListData(OptionalUserData):
    limit: int = Field(default=100, ge=1, le=1000)
    before: str | None = None


class ChatCreateData(_Data):
    title: str | None = Field(default=None, max_length=500)
    usernames: list[str] = Field(default=[], max_length=1000)
    user_ids: list[Ref] = Field(default=[], max_length=1000)
    model: str | None = None


class ChatUpdateData(_Data):
    chat_id: Ref
    title: str | None = Field(default=None, max_length=500)
    usernames: list[str] | None = Field(default=None, max_length=1000)
    model: str | None = None
    current_message_id: Ref | None = None


class ChatRefData(_Data):
    chat_id: Ref


class ChatListData(_Data):
    user_id: Ref | None = None  # admins: that user's chats; default: every chat (admins) or own
    limit: int = Field(default=50, ge=1, le=500)
    before: str | None = None


class ProviderAddData(_Data):
    name: str = Field(pattern=NAME_PATTERN)
    kind: ProviderKind = "openai"
    # seed 003 names the chat completions URL; `api_base` (ending in /v1) is the same thing
    api_endpoint: str | None = Field(default=None, max_length=2000)
    api_base: str | None = Field(default=None, max_length=2000)
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    options: dict[str, object] = {}


class ProviderUpdateData(_Data):
    name: str
    api_endpoint: str | None = Field(default=None, max_length=2000)
    api_base: str | None = Field(default=None, max_length=2000)
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    options: dict[str, object] | None = None


class ProviderRefData(_Data):
    name: str


class LlmAddData(_Data):
    provider_name: str
    llm_name: str = Field(min_length=1, max_length=500)  # the provider's name for the model
    name: str | None = Field(default=None, pattern=NAME_PATTERN)  # what clients ask for
    options: dict[str, object] = {}
    is_default: bool = False


class LlmUpdateData(_Data):
    llm_name: str
    provider_name: str | None = None
    options: dict[str, object] | None = None
    is_default: bool | None = None


class LlmRefData(_Data):
    llm_name: str
    provider_name: str | None = None


class LlmListData(_Data):
    provider_name: str | None = None


class GenerateData(_Data):
    user_input: str = Field(min_length=1, max_length=MAX_TEXT)
    chat_id: Ref | None = None  # default: a new chat
    user_id: Ref | None = None  # who speaks; default: the caller (others: admins only)
    provider_name: str | None = None
    llm_name: str | None = None  # default: the chat's model, else the default model
    options: GenerationOptions = GenerationOptions()


class RegenerateData(_Data):
    message_id: Ref  # the question, or an answer to replace
    provider_name: str | None = None
    llm_name: str | None = None
    options: GenerationOptions = GenerationOptions()


DATA_MODELS: dict[str, type[_Data]] = {
    "USER_CREATE": UserCreateData,
    "USER_UPDATE": UserUpdateData,
    "USER_DELETE": UserRefData,
    "USER_LIST": Nothing,
    "USER_INSTRUCTION_RECORDING_ENABLE": OptionalUserData,
    "USER_INSTRUCTION_RECORDING_DISABLE": OptionalUserData,
    "USER_INSTRUCTION_RECORDING_LIST": RecordListData,
    "USER_INSTRUCTION_RECORDS_LIST": RecordListData,
    "USER_INSTRUCTION_RECORDS_DELETE": OptionalUserData,
    "CHAT_CREATE": ChatCreateData,
    "CHAT_UPDATE": ChatUpdateData,
    "CHAT_DELETE": ChatRefData,
    "CHAT_LOAD": ChatRefData,
    "CHAT_LIST": ChatListData,
    "LLM_PROVIDER_ADD": ProviderAddData,
    "LLM_PROVIDER_UPDATE": ProviderUpdateData,
    "LLM_PROVIDER_DELETE": ProviderRefData,
    "LLM_PROVIDER_LIST": Nothing,
    "LLM_ADD": LlmAddData,
    "LLM_UPDATE": LlmUpdateData,
    "LLM_DELETE": LlmRefData,
    "LLM_LIST": LlmListData,
    "LLM_RESPONSE_GENERATE": GenerateData,
    "LLM_RESPONSE_REGENERATE": RegenerateData,
}


class Instruction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(max_length=100)
    data: dict[str, object] = {}
    id: str | None = Field(default=None, max_length=200)  # the client's own reference, echoed


class ErrorBody(BaseModel):
    code: str
    message: str
    retryable: bool = False


class InstructionResult(BaseModel):
    """The envelope every instruction is answered with."""

    status: Literal["success", "error"]
    type: str | None = None
    id: str | None = None
    message: str
    data: dict[str, object] | None = None  # on success
    error: ErrorBody | None = None  # on error


class OwedStart(BaseModel):
    """A bridge's ask that a generate's answer be owed to it: the core stores the turn, keeping
    its answer owed to channel `instructions` for `delivery_id` (its `reply`, held by `holder`),
    and answers 202 with the turn at once; the bridge follows the job and sends the answer (see
    `channels.owed`), so it holds nothing while the model writes."""

    delivery_id: str = Field(min_length=1, max_length=MAX_DELIVERY_ID)
    reply: dict[str, object]
    holder: str = Field(min_length=1, max_length=200)


def generated_data(
    *,
    chat_id: str,
    job_id: str,
    text: str | None,
    question: MessageRead | None,
    answer: MessageRead | None,
) -> dict[str, object]:
    """A successful generate's or regenerate's `data`, wherever its envelope is made."""
    return {
        "chat_id": chat_id,
        "job_id": job_id,
        "llm_response": text,
        "user_message": None if question is None else question.model_dump(mode="json"),
        "assistant_message": None if answer is None else answer.model_dump(mode="json"),
    }
