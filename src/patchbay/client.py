"""CoreClient: the typed HTTP client channels, helpers and the CLI use to reach the core.

One `Http1Client` per process, its connections kept alive (see `http1`: every turn crosses this
hop, and aiohttp spent twice its CPU on each request); each call presents the end user's API
key, so the core applies that user's rights.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson
from pydantic import BaseModel, TypeAdapter

from patchbay.errors import (
    AuthenticationFailed,
    CoreUnavailable,
    CoreUnreachable,
    DeliveryNotFound,
    PatchbayError,
    error_from_dict,
)
from patchbay.http1 import ConnectFailed, Http1Client, Http1Error, Response
from patchbay.schemas.catalog import ModelRead
from patchbay.schemas.deliveries import AnswerSent, DeliveryRead, HoldOwed, OwedAnswer
from patchbay.schemas.instructions import OWED_HEADER, OwedStart
from patchbay.schemas.jobs import JobEvent, JobRead
from patchbay.schemas.senders import (
    AS_USER_HEADER,
    MODULE_TOKEN_HEADER,
    SenderResolve,
    SenderResolved,
)
from patchbay.schemas.status import Heartbeat, StatusRead
from patchbay.schemas.turns import TurnCreate, TurnRead, TurnResult
from patchbay.schemas.users import UserRead

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ActAs:
    """In place of an API key: a channel module (holding the module token) acting for one of its
    senders, a user it resolved with `resolve_sender`."""

    user_id: str


Key = str | ActAs | None


class CoreClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: Key = None,
        module_token: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 600.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.module_token = module_token
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._client: Http1Client | None = None

    def _http(self) -> Http1Client:
        if self._client is None:
            self._client = Http1Client(
                self.base_url,
                connect_timeout_s=self._connect_timeout_s,
                read_timeout_s=self._read_timeout_s,
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> CoreClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def _headers(self, key: Key, **extra: str) -> dict[str, str]:
        key = key or self.api_key
        headers = {"Content-Type": "application/json", **extra}
        if isinstance(key, ActAs):
            headers[AS_USER_HEADER] = key.user_id
            headers[MODULE_TOKEN_HEADER] = self.module_token or ""
        elif key:
            if "\n" in key or "\r" in key or "\0" in key:  # no key holds one; a header can't
                raise AuthenticationFailed("that API key is not valid")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    @asynccontextmanager
    async def _request(
        self, method: str, path: str, *, key: Key, body: Any = None, **headers: str
    ) -> AsyncIterator[Response]:
        data = None if body is None else _dump(body)
        try:
            async with self._http().request(
                method, path, body=data, headers=self._headers(key, **headers)
            ) as response:
                if response.status >= 400:
                    raise await _error(response)
                yield response
        except Http1Error as exc:
            raise CoreUnavailable(
                f"the core at {self.base_url} is not answering; try again shortly"
            ) from exc

    async def call(self, method: str, path: str, *, key: Key = None, body: Any = None) -> Any:
        """A JSON request; returns the decoded answer (None for 204)."""
        async with self._request(method, path, key=key, body=body) as response:
            raw = await response.read()
        return orjson.loads(raw) if raw else None

    async def call_as(
        self, kind: type[T], method: str, path: str, *, key: Key = None, body: Any = None
    ) -> T:
        """A JSON request whose answer is read straight into `kind`."""
        async with self._request(method, path, key=key, body=body) as response:
            raw = await response.read()
        return _adapter(kind).validate_json(raw or b"null")

    async def me(self, *, key: Key = None) -> UserRead:
        return await self.call_as(UserRead, "GET", "/v1/me", key=key)

    async def list_models(self, *, key: Key = None) -> list[ModelRead]:
        return await self.call_as(list[ModelRead], "GET", "/v1/models", key=key)

    async def heartbeat(self, beat: Heartbeat, *, token: str) -> None:
        """Tell the core this module is alive."""
        async with self._request(
            "POST",
            "/v1/status/heartbeat",
            key=None,
            body=beat,
            **{"X-Patchbay-Module-Token": token},
        ):
            pass

    async def status(self, *, key: Key = None) -> StatusRead:
        return await self.call_as(StatusRead, "GET", "/v1/status", key=key)

    async def instruct(
        self,
        body: bytes,
        *,
        key: str | None,
        transport: str = "http",
        owed: OwedStart | None = None,
    ) -> tuple[int, bytes]:
        """Send raw instruction JSON (one or a batch) as is; returns the status and raw answer.

        The answer is the core's JSON envelope whatever the status, so a bridge (the RabbitMQ
        consumer, `transport="rabbitmq"`) passes it on unchanged. With `owed` (a module), a
        generate is answered 202 once its turn is stored, its answer owed to the bridge. Raises
        `CoreUnreachable` when no connection could be made (nothing was sent), `CoreUnavailable`
        when it broke off.
        """
        headers = self._headers(key, **{"X-Patchbay-Transport": transport})
        if owed is not None:  # JSON in ASCII, as a header's value must be
            headers[OWED_HEADER] = json.dumps(owed.model_dump(mode="json"))
            headers[MODULE_TOKEN_HEADER] = self.module_token or ""
        try:
            async with self._http().request(
                "POST", "/v1/instructions", body=body, headers=headers
            ) as response:
                return response.status, await response.read()
        except ConnectFailed as exc:
            raise CoreUnreachable(f"the core at {self.base_url} is not answering") from exc
        except Http1Error as exc:
            raise CoreUnavailable(
                f"the core at {self.base_url} broke off; the instruction may have run"
            ) from exc

    async def resolve_sender(self, sender: SenderResolve) -> SenderResolved:
        """Who a sender is (a channel module, with the module token): a user, a pairing code to
        give them, or a refusal."""
        headers = {MODULE_TOKEN_HEADER: self.module_token or ""}
        async with self._request(
            "POST", "/v1/senders/resolve", key=None, body=sender, **headers
        ) as response:
            return SenderResolved.model_validate_json(await response.read())

    async def hold_owed(self, hold: HoldOwed) -> list[OwedAnswer]:
        """Renew a channel process's hold on its owed answers and take more (a channel module)."""
        headers = {MODULE_TOKEN_HEADER: self.module_token or ""}
        async with self._request(
            "POST", "/v1/deliveries/owed/hold", key=None, body=hold, **headers
        ) as response:
            return _adapter(list[OwedAnswer]).validate_json(await response.read())

    async def answer_sent(self, sent: AnswerSent) -> None:
        """Tell the core a delivery's answer went out: it is owed no more (a channel module)."""
        headers = {MODULE_TOKEN_HEADER: self.module_token or ""}
        async with self._request("POST", "/v1/deliveries/answered", key=None, body=sent, **headers):
            pass

    async def find_delivery(
        self, channel: str, delivery_id: str, *, key: Key = None
    ) -> DeliveryRead | None:
        """The turn that took the user's `delivery_id` on `channel`; None while none has."""
        query = urlencode({"channel": channel, "delivery_id": delivery_id})
        try:
            return await self.call_as(DeliveryRead, "GET", f"/v1/deliveries/turn?{query}", key=key)
        except DeliveryNotFound:
            return None

    async def job(self, job_id: str, *, key: Key = None) -> JobRead:
        """A job's state (its owner's, or one acted for)."""
        return await self.call_as(JobRead, "GET", f"/v1/jobs/{job_id}", key=key)

    async def cancel_job(self, job_id: str, *, key: Key = None) -> JobRead:
        """Stop a queued or running job; it keeps its answer so far, marked cancelled."""
        return await self.call_as(JobRead, "DELETE", f"/v1/jobs/{job_id}", key=key)

    async def run_turn(self, turn: TurnCreate, *, key: Key = None) -> TurnResult:
        """Start a turn and wait for its outcome."""
        return await self.call_as(TurnResult, "POST", "/v1/turns?wait=true", key=key, body=turn)

    @asynccontextmanager
    async def stream_turn(
        self, turn: TurnCreate, *, key: Key = None
    ) -> AsyncIterator[tuple[TurnRead, AsyncIterator[list[JobEvent]]]]:
        """Start a turn and follow its events as they happen, in batches."""
        async with self._request(
            "POST", "/v1/turns", key=key, body=turn, Accept="text/event-stream"
        ) as response:
            h = response.headers  # names in lower case
            created = TurnRead(
                chat_id=h["x-patchbay-chat-id"],
                job_id=h["x-patchbay-job-id"],
                user_message_id=h["x-patchbay-user-message-id"],
                assistant_message_id=h["x-patchbay-message-id"],
                model=h["x-patchbay-model"],
            )
            yield created, _batches(response, self.base_url)

    @asynccontextmanager
    async def job_events(
        self, job_id: str, *, after: int = 0, key: Key = None
    ) -> AsyncIterator[AsyncIterator[list[JobEvent]]]:
        """Follow a job's events from just after `after` (resume), in batches."""
        async with self._request(
            "GET", f"/v1/jobs/{job_id}/events", key=key, **{"Last-Event-ID": str(after)}
        ) as response:
            yield _batches(response, self.base_url)


async def _batches(response: Response, base_url: str) -> AsyncIterator[list[JobEvent]]:
    """The SSE events of a response, in batches of those that arrived together."""
    buffer = b""
    try:
        async for data in response.chunks():
            buffer += data.replace(b"\r\n", b"\n")
            *blocks, buffer = buffer.split(b"\n\n")
            batch = [event for event in map(_event, blocks) if event is not None]
            if batch:
                yield batch
    except Http1Error as exc:
        raise CoreUnavailable(f"the core at {base_url} broke off the event stream") from exc


def _event(block: bytes) -> JobEvent | None:
    data = [line[5:].lstrip() for line in block.split(b"\n") if line.startswith(b"data:")]
    return JobEvent.model_validate_json(b"\n".join(data)) if data else None


_ADAPTERS: dict[object, TypeAdapter[Any]] = {}


def _adapter(kind: type[T]) -> TypeAdapter[T]:
    """One adapter per answer type: building one costs more than the validation."""
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(kind)
    return adapter


def _dump(body: Any) -> bytes:
    if isinstance(body, BaseModel):
        return body.model_dump_json(exclude_none=True).encode()
    return orjson.dumps(body)


async def _error(response: Response) -> PatchbayError:
    raw = await response.read()
    try:
        error = orjson.loads(raw)["error"]
        if isinstance(error, dict):
            return error_from_dict(error, response.status)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    return error_from_dict(
        {"code": "internal_error", "message": raw[:200].decode("utf-8", "replace")},
        response.status,
    )
