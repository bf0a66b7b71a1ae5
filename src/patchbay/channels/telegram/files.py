"""Photos, documents, voice notes and audio sent to the bot, fetched with `getFile` and passed to
the turn as attachments (the core's helpers turn them into text)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from patchbay.channels.telegram.botapi import BotApi, BotApiError, too_large
from patchbay.channels.telegram.schemas import Message
from patchbay.errors import PayloadTooLarge
from patchbay.schemas.turns import AttachmentIn


@dataclass(frozen=True, slots=True)
class Wanted:
    file_id: str
    size: int | None
    media_type: str
    filename: str


def wanted_files(message: Message, *, max_bytes: int) -> list[Wanted]:
    """The files in `message`: of a photo, the largest size under `max_bytes`."""
    found: list[Wanted] = []
    if message.photo:
        fitting = [p for p in message.photo if (p.file_size or 0) <= max_bytes]
        photo = max(fitting or message.photo, key=lambda p: p.width * p.height)
        found.append(Wanted(photo.file_id, photo.file_size, "image/jpeg", "photo.jpg"))
    kinds = (
        (message.document, "application/octet-stream", "document"),
        (message.voice, "audio/ogg", "voice.ogg"),
        (message.audio, "audio/mpeg", "audio"),
    )
    for ref, media_type, filename in kinds:
        if ref is not None:
            found.append(
                Wanted(
                    ref.file_id,
                    ref.file_size,
                    ref.mime_type or media_type,
                    ref.file_name or filename,
                )
            )
    return found


async def fetch_files(api: BotApi, message: Message, *, max_bytes: int) -> list[AttachmentIn]:
    """Download the files in `message`; too large a file refuses the whole message."""
    wanted = wanted_files(message, max_bytes=max_bytes)
    if any((w.size or 0) > max_bytes for w in wanted):
        raise PayloadTooLarge(too_large(max_bytes))
    attachments: list[AttachmentIn] = []
    for want in wanted:
        file = await api.get_file(want.file_id)
        if not file.file_path:
            raise BotApiError("Telegram did not say where to download the file from")
        data = await api.download(file.file_path, max_bytes=max_bytes)
        attachments.append(
            AttachmentIn(
                media_type=want.media_type,
                data=base64.b64encode(data).decode(),
                filename=want.filename,
            )
        )
    return attachments
