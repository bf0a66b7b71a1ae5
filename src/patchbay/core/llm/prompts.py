"""A job's messages as `llm` messages: each file goes to the model as an attachment when the model
reads its media type itself, and as the text a helper made of it when it does not."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import llm

from patchbay.queue.base import PromptMessage

_BUILDERS: dict[str, Callable[..., Any]] = {
    "system": llm.system,
    "user": llm.user,
    "assistant": llm.assistant,
}


def text_and_files(
    message: PromptMessage, accepted: Collection[str]
) -> tuple[str, list[llm.Attachment]]:
    """A message's text and the attachments the model reads itself."""
    if not message.files:
        return message.text, []
    texts, attachments = [message.text], []
    for file in message.files:
        if file.media_type in accepted:
            attachments.append(llm.Attachment(type=file.media_type, content=file.data))
        else:
            texts.append(file.text)
    return "".join(texts), attachments


def llm_message(message: PromptMessage, accepted: Collection[str]) -> Any:
    """An earlier message of the conversation, as `llm` sends it."""
    text, attachments = text_and_files(message, accepted)
    return _BUILDERS[message.role](text, *attachments)
