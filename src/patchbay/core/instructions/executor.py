"""Runs instructions: decodes the JSON, checks the data, calls its handler, records it if asked.

Every failure becomes an error envelope with a specific code; nothing raised here escapes to the
transport, so one bad instruction never stops the HTTP route or the RabbitMQ consumer.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import orjson
from pydantic import ValidationError

from patchbay.core.instructions.handlers import Handlers
from patchbay.core.users import UserService
from patchbay.errors import (
    InvalidInstruction,
    InvalidJson,
    PatchbayError,
    StoreUnavailable,
    UnknownInstruction,
)
from patchbay.ids import new_id
from patchbay.schemas.instructions import (
    DATA_MODELS,
    GENERATE,
    MAX_BATCH,
    ErrorBody,
    GenerateData,
    Instruction,
    InstructionResult,
    OwedStart,
)
from patchbay.schemas.users import InstructionRecord, UserRead

logger = logging.getLogger(__name__)

# A field whose name, in lower case without separators, holds one of these is a secret
# (`api_key`, `apiKeys`, `X-Api-Key`, `client_secret`, `Authorization`, `private_key_pem`), and so
# is one that ends in `token` (`access_token`; not `max_tokens`) or is just `key`.
SECRET_PARTS = (
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "password",
    "passwd",
    "passphrase",
    "secret",
    "authorization",
    "credential",
)


def parse(raw: bytes) -> object:
    """The decoded body: one instruction or a list of them."""
    try:
        decoded: object = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"the message is not JSON: {exc}") from exc
    if isinstance(decoded, list) and len(decoded) > MAX_BATCH:
        raise InvalidInstruction(f"a batch holds at most {MAX_BATCH} instructions")
    return decoded


def error_result(
    error: PatchbayError, *, kind: str | None = None, ref: str | None = None
) -> InstructionResult:
    return InstructionResult(
        status="error",
        type=kind,
        id=ref,
        message=error.message,
        error=ErrorBody(code=error.code, message=error.message, retryable=error.retryable),
    )


def _problems(exc: ValidationError) -> str:
    parts = []
    for problem in exc.errors()[:5]:
        where = ".".join(str(p) for p in problem.get("loc", ()))
        parts.append(f"{where or 'data'}: {problem.get('msg', 'invalid')}")
    return "; ".join(parts)


def redacted(value: object) -> object:
    """`value` with secrets (provider keys) replaced, fit to be recorded."""
    if isinstance(value, dict):
        return {k: "***" if v and _secret(k) else redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def _secret(field: object) -> bool:
    name = "".join(c for c in str(field).lower() if c.isalnum())
    return name in ("key", "keys") or name.endswith("token") or any(p in name for p in SECRET_PARTS)


class InstructionExecutor:
    def __init__(self, handlers: Handlers, users: UserService) -> None:
        self._handlers = handlers
        self._users = users

    async def run(self, actor: UserRead, item: object, *, transport: str) -> InstructionResult:
        """Execute one decoded instruction as `actor`; records it when the actor asked for it."""
        return await self._result(actor, item, transport, None)

    async def start_owed(
        self, actor: UserRead, item: object, owed: OwedStart, *, transport: str
    ) -> InstructionResult | None:
        """Start a generate whose answer is owed to the bridge that asked (see `OwedStart`),
        without waiting for the answer; None for any other instruction (run it as usual)."""
        if not isinstance(item, dict) or item.get("type") != GENERATE:
            return None
        return await self._result(actor, item, transport, owed)

    async def _result(
        self, actor: UserRead, item: object, transport: str, owed: OwedStart | None
    ) -> InstructionResult:
        started = time.perf_counter()
        kind = item.get("type") if isinstance(item, dict) else None
        kind = kind[:100] if isinstance(kind, str) else None
        ref = item.get("id") if isinstance(item, dict) else None
        ref = ref if isinstance(ref, str) else None
        try:
            message, data = await self._execute(actor, item, owed, ref)
            result = InstructionResult(
                status="success", type=kind, id=ref, message=message, data=data
            )
        except PatchbayError as exc:
            result = error_result(exc, kind=kind, ref=ref)
        except Exception:
            logger.exception("instruction %s failed", kind)
            error = PatchbayError("the instruction failed inside patchbay; see the core's log")
            result = error_result(error, kind=kind, ref=ref)
        latency_ms = (time.perf_counter() - started) * 1000
        await self._record(actor, item, kind, result, latency_ms, transport)
        return result

    async def _execute(
        self, actor: UserRead, item: object, owed: OwedStart | None, ref: str | None
    ) -> tuple[str, dict[str, object]]:
        try:
            instruction = Instruction.model_validate(item)
        except ValidationError as exc:
            raise InvalidInstruction(
                f"an instruction is an object with `type` and `data`: {_problems(exc)}"
            ) from exc
        handler = self._handlers.table.get(instruction.type)
        model = DATA_MODELS.get(instruction.type)
        if handler is None or model is None:
            raise UnknownInstruction(
                f"unknown instruction type {instruction.type!r}; known: {', '.join(DATA_MODELS)}"
            )
        try:
            data = model.model_validate(instruction.data)
        except ValidationError as exc:
            raise InvalidInstruction(f"{instruction.type}: {_problems(exc)}") from exc
        try:
            if owed is not None and isinstance(data, GenerateData):
                return await self._handlers.start_owed(actor, data, owed, ref)
            return await handler(actor, data)
        except ValidationError as exc:  # the data, as the service's own model checks it
            raise InvalidInstruction(f"{instruction.type}: {_problems(exc)}") from exc

    async def _record(
        self,
        actor: UserRead,
        item: object,
        kind: str | None,
        result: InstructionResult,
        latency_ms: float,
        transport: str,
    ) -> None:
        if not actor.instruction_recording:
            return
        payload = redacted(item.get("data") if isinstance(item, dict) else item)
        record = InstructionRecord(
            id=new_id(),
            user_id=actor.id,
            type=kind,
            transport=transport,
            payload=payload,
            status=result.status,
            error_code=result.error.code if result.error else None,
            latency_ms=round(latency_ms, 3),
            created_at=datetime.now(UTC),
        )
        try:
            await self._users.record(record)
        except StoreUnavailable:
            logger.warning("instruction record not stored: the database is unavailable")
