"""Assistant templates (seed 002): one or more streams, each a model and its messages, chained.

A stream's messages may hold `{query}` (what the person said) and, after the first stream,
`{previous_stream_output}`; `{"insert": "history"}` stands for the conversation so far. Only the
template's own text is searched for placeholders, never what people write.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from patchbay.schemas.catalog import NAME_PATTERN
from patchbay.schemas.chats import MessageRole
from patchbay.schemas.options import MAX_TEXT, GenerationOptions

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
QUERY, PREVIOUS = "query", "previous_stream_output"


class TemplateMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: MessageRole
    content: str = Field(max_length=MAX_TEXT)


class HistoryInsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    insert: Literal["history"]


class StreamSettings(GenerationOptions):
    model: str | None = None  # default: the default model (or the provider's only model)


class StreamTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str | None = None  # a configured provider; None: `settings.model` as a model id
    settings: StreamSettings = StreamSettings()
    messages: list[TemplateMessage | HistoryInsert] = Field(min_length=1, max_length=200)


class AssistantTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    streams: list[StreamTemplate] = Field(min_length=1, max_length=8)

    @model_validator(mode="after")
    def _known_placeholders(self) -> AssistantTemplate:
        for index, stream in enumerate(self.streams):
            allowed = {QUERY} if index == 0 else {QUERY, PREVIOUS}
            for message in stream.messages:
                if not isinstance(message, TemplateMessage):
                    continue
                for name in PLACEHOLDER.findall(message.content):
                    if name not in allowed:
                        raise ValueError(
                            f"stream {index + 1}: unknown placeholder {{{name}}}; "
                            f"known here: {', '.join('{' + a + '}' for a in sorted(allowed))}"
                        )
        return self


def fill(content: str, values: dict[str, str]) -> str:
    """The template text with its placeholders replaced in one pass (values are not searched)."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), content)


class AssistantCreate(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = Field(default=None, max_length=2000)
    template: AssistantTemplate


class AssistantUpdate(BaseModel):
    description: str | None = Field(default=None, max_length=2000)
    template: AssistantTemplate | None = None


class AssistantRead(BaseModel):
    id: str
    name: str
    description: str | None
    template: AssistantTemplate
    created_at: datetime
    updated_at: datetime
