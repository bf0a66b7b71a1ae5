"""Attachments: files that come with a turn are kept (by their sha256 under the data directory)
and turned into text by the helpers, so any model can read them."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

from patchbay.core.helpers import HelperRegistry
from patchbay.errors import InvalidRequest, PayloadTooLarge
from patchbay.schemas.chats import AttachmentRead
from patchbay.schemas.turns import AttachmentIn
from patchbay.schemas.users import UserRead


@dataclass(frozen=True, slots=True)
class Upload:
    """A file as the core received it (decoded from base64, or from a multipart upload)."""

    media_type: str
    data: bytes
    filename: str | None = None


def decode(attachment: AttachmentIn, index: int) -> Upload:
    """The bytes of an attachment given as base64 or as a `data:` URL."""
    media_type, payload = attachment.media_type, attachment.data
    if payload.startswith("data:"):
        header, _, payload = payload.partition(",")
        declared = header[5:].split(";", 1)[0]
        media_type = media_type or declared or None
        if ";base64" not in header:
            raise InvalidRequest(f"attachments[{index}]: only base64 data URLs are read")
    if not media_type:
        raise InvalidRequest(f"attachments[{index}]: say its media_type (or use a data URL)")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"attachments[{index}]: the data is not base64") from exc
    return Upload(media_type=media_type, data=data, filename=attachment.filename)


def for_the_model(text: str, attachments: list[AttachmentRead]) -> str:
    """What the model reads for a message: its text, then each attachment's text."""
    parts = [text]
    for attachment in attachments:
        name = attachment.filename or attachment.media_type
        parts.append(f"\n\n[Attached: {name} ({attachment.media_type})]\n{attachment.text}")
    return "".join(parts)


class AttachmentStore:
    def __init__(self, directory: Path, helpers: HelperRegistry, *, max_bytes: int) -> None:
        self._directory = directory
        self._helpers = helpers
        self._max_bytes = max_bytes

    async def accept(self, user: UserRead, uploads: list[Upload]) -> list[AttachmentRead]:
        """Keep each file and turn it into text; refuses what cannot be read, before storing
        anything of the turn."""
        accepted = []
        for index, upload in enumerate(uploads):
            if not upload.data:
                raise InvalidRequest(f"attachments[{index}] is empty")
            if len(upload.data) > self._max_bytes:
                raise PayloadTooLarge(
                    f"attachments[{index}] is {len(upload.data)} bytes; the limit is "
                    f"{self._max_bytes}"
                )
            converted = await self._helpers.to_text(user, upload.media_type, upload.data)
            digest = await asyncio.to_thread(self._keep, upload.data)
            accepted.append(
                AttachmentRead(
                    id=digest,
                    media_type=upload.media_type.split(";", 1)[0].strip().lower(),
                    filename=upload.filename,
                    size=len(upload.data),
                    text=converted.text,
                )
            )
        return accepted

    def _keep(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._directory / digest[:2] / digest
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".part")
            partial.write_bytes(data)
            partial.replace(path)
        return digest
