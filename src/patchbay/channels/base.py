"""The channel base class: what a channel needs to turn what people send into turns and send the
answers back, so a new channel (built in, or a package with a `patchbay` entry point) is small.

A channel gets its settings (`settings.channels[NAME]`, validated by its `settings_model`), a
`CoreClient` that acts for senders (`self.act_as(user)`), an aiohttp session, an optional
`router()` for webhooks and an optional `run()` for servers and pollers (an SMTP server, IMAP).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

import aiohttp
from fastapi import APIRouter
from pydantic import BaseModel, Field, ValidationError

from patchbay.client import ActAs, CoreClient
from patchbay.errors import InvalidRequest
from patchbay.schemas.senders import SenderPolicy, SenderResolve, SenderResolved
from patchbay.schemas.turns import (
    MAX_DELIVERY_ID,
    MAX_THREAD,
    AttachmentIn,
    TurnCreate,
    TurnRead,
    TurnResult,
)


class ChannelSettings(BaseModel):
    """What every channel is told; a channel's own settings model extends it."""

    enabled: bool = False  # `patchbay up` runs it
    host: str = "127.0.0.1"
    port: int | None = None  # None: no HTTP (a channel that only runs servers or pollers)
    policy: SenderPolicy = "pairing"  # who may write: open, pairing or allowlist
    model: str | None = None  # the model (or assistant:NAME) its turns use; default: the default
    # A request body past this is refused (413) before a route reads it whole; a form's fields
    # are read into memory, and nobody is known yet when a webhook's body is read.
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)


S = TypeVar("S", bound=ChannelSettings)


class Channel(Generic[S]):
    name: ClassVar[str]
    settings_model: ClassVar[type[ChannelSettings]] = ChannelSettings

    def __init__(self, settings: S, core: CoreClient) -> None:
        self.settings = settings
        self.core = core
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        """One HTTP session for the channel's own calls (a gateway, a relay), made on first use."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def router(self) -> APIRouter | None:
        """Webhooks and other HTTP routes, if the channel has any."""
        return None

    async def run(self) -> None:
        """Servers and pollers the channel runs beside its routes (until cancelled)."""

    async def sender(self, address: str, display_name: str | None = None) -> SenderResolved:
        """Who wrote, under this channel's policy: a user, a pairing code to give, or a no."""
        return await self.core.resolve_sender(
            SenderResolve(
                channel=self.name,
                address=address,
                display_name=display_name,
                policy=self.settings.policy,
            )
        )

    async def turn(
        self,
        user_id: str,
        text: str,
        *,
        thread: str | None = None,
        attachments: Sequence[AttachmentIn] = (),
        metadata: dict[str, object] | None = None,
        delivery_id: str | None = None,
    ) -> TurnResult:
        """Send what a sender said as a turn in their chat for `thread`; wait for the answer.

        `delivery_id` is the channel's id for the message: raises `DuplicateDelivery` when the
        core took it before (it was answered then).
        """
        turn = self._turn_body(text, thread, attachments, metadata, delivery_id=delivery_id)
        return await self.core.run_turn(turn, key=ActAs(user_id))

    async def start_turn(
        self,
        user_id: str,
        text: str,
        *,
        delivery_id: str,
        reply: dict[str, object],
        holder: str,
        thread: str | None = None,
        attachments: Sequence[AttachmentIn] = (),
        metadata: dict[str, object] | None = None,
        behind: bool = False,
    ) -> TurnRead:
        """Store what a sender said as a turn in their chat for `thread` and start its job; its
        answer is owed to this channel until it says it sent it to `reply`, held by `holder`,
        this process (see `channels.owed`). `behind`: if the chat's last answer is still coming,
        the job starts once that one has ended (`TurnCreate.queue_behind`). Raises
        `DuplicateDelivery` when the core took `delivery_id` before."""
        turn = self._turn_body(
            text,
            thread,
            attachments,
            metadata,
            delivery_id=delivery_id,
            reply=reply,
            holder=holder,
            behind=behind,
        )
        return await self.core.call_as(TurnRead, "POST", "/v1/turns", key=ActAs(user_id), body=turn)

    def _turn_body(
        self,
        text: str,
        thread: str | None,
        attachments: Sequence[AttachmentIn],
        metadata: dict[str, object] | None,
        *,
        delivery_id: str | None = None,
        reply: dict[str, object] | None = None,
        holder: str | None = None,
        behind: bool = False,
    ) -> TurnCreate:
        """The turn; raises `InvalidRequest` for what the core would not take (a message past
        its length, a reply too big to keep)."""
        try:
            return TurnCreate(
                channel=self.name,
                thread=None if thread is None else _within(thread, MAX_THREAD),
                text=text,
                model=self.settings.model,
                attachments=list(attachments),
                metadata=metadata or {},
                stream=False,  # nobody reads a channel's answers token by token
                delivery_id=delivery_id,
                reply=reply,
                reply_holder=holder,
                queue_behind=behind,
            )
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "the turn"
            raise InvalidRequest(f"{where}: {error['msg']}") from None


def pairing_message(resolved: SenderResolved) -> str:
    """What to tell a sender who is not let in (yet)."""
    if resolved.status == "pairing":
        return (
            f"Hello! Before we can talk, an admin must let you in. Your code is {resolved.code}: "
            "they approve it with `patchbay pairing approve` (it expires in an hour)."
        )
    return "Sorry, this address may not use this service."


def delivery_key(*parts: str) -> str:
    """A `delivery_id` from what makes a message the same one (a sender, a message id), hashed
    when it would be longer than the core keeps."""
    return _within(" ".join(parts), MAX_DELIVERY_ID)


def _within(key: str, limit: int) -> str:
    """`key`, or its hash when it is longer than `limit` (the same key, the same hash)."""
    if len(key) <= limit:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def unique_delivery_id() -> str:
    """A `delivery_id` for a message that came without an id of its own (it never repeats), so
    its answer can be owed all the same."""
    return f"patchbay-{uuid.uuid4().hex}"


def chunks(text: str, limit: int) -> list[str]:
    """`text` in pieces of at most `limit` characters, split at a line or a space where it can."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = max(rest.rfind("\n", 0, limit), rest.rfind(" ", 0, limit))
        if cut <= limit // 2:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def channel_settings(channel: type[Channel[Any]], raw: dict[str, object]) -> ChannelSettings:
    return channel.settings_model.model_validate(raw)
