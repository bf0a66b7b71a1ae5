"""The parts of Telegram's Bot API wire format the channel reads (https://core.telegram.org/bots/api).

Unknown fields are ignored, so new Bot API versions do not break the webhook.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TelegramModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class User(TelegramModel):
    id: int
    is_bot: bool = False
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None

    @property
    def display_name(self) -> str | None:
        name = " ".join(part for part in (self.first_name, self.last_name) if part)
        return name or self.username


class Chat(TelegramModel):
    id: int
    type: str = "private"  # private, group, supergroup or channel


class FileRef(TelegramModel):
    """A document, voice note or audio file: what `getFile` needs, and what to call it."""

    file_id: str
    file_size: int | None = None
    mime_type: str | None = None
    file_name: str | None = None


class PhotoSize(TelegramModel):
    file_id: str
    width: int = 0
    height: int = 0
    file_size: int | None = None


class Message(TelegramModel):
    message_id: int
    sender: User | None = Field(default=None, alias="from")  # absent in channel posts
    chat: Chat
    message_thread_id: int | None = None
    is_topic_message: bool = False  # in a forum topic, which answers must name to land there
    text: str | None = None
    caption: str | None = None  # a photo's or a document's text
    photo: list[PhotoSize] | None = None  # the same picture in several sizes
    document: FileRef | None = None
    voice: FileRef | None = None
    audio: FileRef | None = None

    @property
    def topic(self) -> int | None:
        """The forum topic the message is in (None: the chat itself)."""
        return self.message_thread_id if self.is_topic_message else None


class Update(TelegramModel):
    update_id: int
    message: Message | None = None  # other kinds (edits, callbacks) are not answered


class File(TelegramModel):
    """`getFile`'s answer: where to download the file from, valid for an hour."""

    file_id: str
    file_size: int | None = None
    file_path: str | None = None
