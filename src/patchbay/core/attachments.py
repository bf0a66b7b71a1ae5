"""Attachments: files that come with a turn are kept (by their sha256 under the data directory)
and turned into text by the helpers, so any model can read them; a model that reads a file's media
type itself (a vision model, an image) is sent the file instead."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import mimetypes
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from patchbay.core.helpers import HelperRegistry
from patchbay.errors import InvalidRequest, PatchbayError, PayloadTooLarge
from patchbay.queue.base import PromptFile, PromptMessage
from patchbay.schemas.chats import AttachmentRead
from patchbay.schemas.turns import AttachmentIn
from patchbay.schemas.users import UserRead

logger = logging.getLogger(__name__)

GENERIC = "application/octet-stream"  # "some bytes": says nothing of what they are
TEXT_SUFFIX = ".txt"  # beside a kept file: the text a helper made for it later (see `with_text`)

# A message of the conversation as stored: its role, its text and its files.
Said = tuple[str, str, list[AttachmentRead]]


@dataclass(frozen=True, slots=True)
class Upload:
    """A file as the core received it (decoded from base64, or from a multipart upload)."""

    media_type: str
    data: bytes
    filename: str | None = None


def decode(attachment: AttachmentIn, where: str) -> Upload:
    """The bytes of an attachment given as base64 or as a `data:` URL; `where` names it in
    errors (`attachments[0]`)."""
    media_type, payload = attachment.media_type, attachment.data
    if payload.startswith("data:"):
        header, _, payload = payload.partition(",")
        declared = header[5:].split(";", 1)[0]
        media_type = media_type or declared or None
        if ";base64" not in header:
            raise InvalidRequest(f"{where}: only base64 data URLs are read")
    if not media_type:
        raise InvalidRequest(f"{where}: say its media_type (or use a data URL)")
    if "\n" in payload:  # wrapped, as MIME wraps it at 76 characters
        payload = "".join(payload.split())
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"{where}: the data is not base64") from exc
    return Upload(media_type=media_type, data=data, filename=attachment.filename)


def media_type_of(upload: Upload) -> str:
    """An upload's media type, without parameters; when it declares none in particular (curl,
    mailers and Telegram send `application/octet-stream` for many files), the one its name says."""
    declared = upload.media_type.split(";", 1)[0].strip().lower()
    if declared in ("", GENERIC) and upload.filename:
        guessed, _encoding = mimetypes.guess_type(upload.filename, strict=False)
        return guessed or declared
    return declared


def attached_text(attachment: AttachmentRead) -> str:
    """What a model that cannot read a file itself reads in its place."""
    name = _one_line(attachment.filename or attachment.media_type)
    return f"\n\n[Attached: {name} ({_one_line(attachment.media_type)})]\n{attachment.text}"


def _one_line(value: str) -> str:
    """`value` on one line: a file's name (a mail's attachment's, say) is the sender's to choose,
    and a line break in it would let the sender write what looks like the prompt's own lines."""
    return " ".join("".join(c if c.isprintable() else " " for c in value).split())


def for_the_model(text: str, attachments: Sequence[AttachmentRead]) -> str:
    """What the model reads for a message: its text, then each attachment's text."""
    if not attachments:
        return text
    return "".join([text, *map(attached_text, attachments)])


def prompt_message(said: Said, native: frozenset[str], kept: dict[str, bytes]) -> PromptMessage:
    """A message for the model: the files of a media type in `native` go as they are (their
    bytes in `kept`, by sha256), the others as their text."""
    role, text, attachments = said
    files, as_text = [], []
    for attachment in attachments:
        data = kept.get(attachment.id) if attachment.media_type in native else None
        if data is None:
            as_text.append(attachment)
        else:
            files.append(PromptFile(attachment.media_type, data, attached_text(attachment)))
    return PromptMessage(role, for_the_model(text, as_text), tuple(files))


class AttachmentStore:
    def __init__(self, directory: Path, helpers: HelperRegistry, *, max_bytes: int) -> None:
        self._directory = directory
        self._helpers = helpers
        self._max_bytes = max_bytes

    async def accept(
        self,
        user: UserRead,
        uploads: list[Upload],
        *,
        native: frozenset[str] = frozenset(),
        where: str = "attachments",
    ) -> list[AttachmentRead]:
        """Keep each file and turn it into text, unless the model reads its media type itself
        (`native`: no helper is needed then); refuses what cannot be read, before storing anything
        of the turn. `where` names the files in errors."""
        accepted = []
        for index, upload in enumerate(uploads):
            if not upload.data:
                raise InvalidRequest(f"{where}[{index}] is empty")
            if len(upload.data) > self._max_bytes:
                raise PayloadTooLarge(
                    f"{where}[{index}] is {len(upload.data)} bytes; the limit is {self._max_bytes}"
                )
            media_type = media_type_of(upload)
            text = ""
            if media_type not in native:
                text = (await self._helpers.to_text(user, media_type, upload.data)).text
            digest = await asyncio.to_thread(self._keep, upload.data)
            accepted.append(
                AttachmentRead(
                    id=digest,
                    media_type=media_type,
                    filename=upload.filename,
                    size=len(upload.data),
                    text=text,
                )
            )
        return accepted

    async def with_text(
        self, user: UserRead, conversation: Sequence[Said], *, native: frozenset[str]
    ) -> list[Said]:
        """`conversation`, with text for the files the turn's models read only as text but that
        have none (kept when a model that read them itself was sent them): made now by a helper,
        once per file, and kept beside it; a file no helper can read keeps only its name."""
        missing = {
            a.id: a
            for _role, _text, files in conversation
            for a in files
            if not a.text and a.media_type not in native
        }
        if not missing:
            return list(conversation)
        texts = {digest: await self._text_of(user, a) for digest, a in missing.items()}
        return [
            (role, text, [a.model_copy(update={"text": texts.get(a.id) or a.text}) for a in files])
            for role, text, files in conversation
        ]

    async def _text_of(self, user: UserRead, attachment: AttachmentRead) -> str:
        known = await asyncio.to_thread(self._read_text, attachment.id)
        if known is not None:
            return known
        data = (await asyncio.to_thread(self._read, {attachment.id})).get(attachment.id)
        if data is None:
            return ""
        try:
            text = (await self._helpers.to_text(user, attachment.media_type, data)).text
        except PatchbayError as exc:  # another time, perhaps: not kept
            logger.info("attachment %s has no text (%s)", attachment.id, exc.message)
            return ""
        await asyncio.to_thread(self._keep_text, attachment.id, text)
        return text

    async def prompt_messages(
        self, conversation: Sequence[Said], *, native: frozenset[str]
    ) -> tuple[PromptMessage, ...]:
        """A job's messages: each one's text with its files' text, but files of a media type in
        `native` go to the model as they are (or as text, should one no longer be kept)."""
        if native:
            wanted = {a.id for _, _, files in conversation for a in files if a.media_type in native}
            if wanted:
                kept = await asyncio.to_thread(self._read, wanted)
                return tuple(prompt_message(said, native, kept) for said in conversation)
        return tuple(
            PromptMessage(role, for_the_model(text, files)) for role, text, files in conversation
        )

    def _read(self, digests: set[str]) -> dict[str, bytes]:
        kept = {}
        for digest in digests:
            try:
                kept[digest] = self._path(digest).read_bytes()
            except OSError as exc:
                logger.warning(
                    "attachment %s cannot be read (%s); the model gets its text", digest, exc
                )
        return kept

    def _path(self, digest: str) -> Path:
        return self._directory / digest[:2] / digest

    def _keep(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            _write_whole(path, data)
        return digest

    def _read_text(self, digest: str) -> str | None:
        try:
            return self._path(digest).with_suffix(TEXT_SUFFIX).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def _keep_text(self, digest: str, text: str) -> None:
        try:
            _write_whole(self._path(digest).with_suffix(TEXT_SUFFIX), text.encode())
        except OSError as exc:  # made again next time
            logger.warning("the text of attachment %s cannot be kept (%s)", digest, exc)


def _write_whole(path: Path, data: bytes) -> None:
    """Write `path` so no reader ever sees part of it: through a `.part` file of this writer's
    own (two turns may keep the same file at once), renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    except OSError:
        partial.unlink(missing_ok=True)  # a full disk, say: nothing half-written is left
        raise
