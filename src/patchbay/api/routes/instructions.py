"""`POST /v1/instructions`: seed 003's instructions over HTTP, one or a batch.

Every answer is an instruction envelope, errors included (bad JSON, a bad key), so a bridge such as
the RabbitMQ consumer can pass it on unchanged. A bridge may ask (`X-Patchbay-Owed`, with the module
token) that a generate be answered later: it is then answered 202 once its turn is stored.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from patchbay.api.deps import HubDep, bearer_key
from patchbay.core.hub import Hub
from patchbay.core.instructions.executor import error_result, parse
from patchbay.errors import AuthenticationFailed, InvalidRequest, PatchbayError
from patchbay.schemas.instructions import OWED_HEADER, InstructionResult, OwedStart
from patchbay.schemas.senders import MODULE_TOKEN_HEADER
from patchbay.tokens import valid_module_token

router = APIRouter(prefix="/v1", tags=["instructions"])

TRANSPORTS = frozenset({"http", "rabbitmq"})


def _json(result: InstructionResult | list[InstructionResult], status: int) -> Response:
    if isinstance(result, list):
        body = (
            b"[" + b",".join(r.model_dump_json(exclude_none=True).encode() for r in result) + b"]"
        )
    else:
        body = result.model_dump_json(exclude_none=True).encode()
    return Response(body, status_code=status, media_type="application/json")


@router.post(
    "/instructions",
    response_model=InstructionResult | list[InstructionResult],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": ["object", "array"]}}},
        }
    },
)
async def instructions(request: Request, hub: HubDep) -> Response:
    """Run one instruction (`{"type", "data"}`) or a list of them, in order, as the caller.

    One instruction is answered with its envelope and the HTTP status of its outcome; a batch with
    a list of envelopes and 200.
    """
    transport = request.headers.get("x-patchbay-transport", "http")
    transport = transport if transport in TRANSPORTS else "http"
    try:
        actor = await hub.auth.authenticate(bearer_key(request))
        owed = _owed(request, hub)
        body = parse(await request.body())
    except PatchbayError as exc:
        return _json(error_result(exc), exc.status)
    if owed is not None and not isinstance(body, list):
        started = await hub.instructions.start_owed(actor, body, owed, transport=transport)
        if started is not None:
            return _json(started, _status(started, success=202))
    if isinstance(body, list):
        results = [await hub.instructions.run(actor, item, transport=transport) for item in body]
        return _json(results, 200)
    result = await hub.instructions.run(actor, body, transport=transport)
    return _json(result, _status(result))


def _status(result: InstructionResult, *, success: int = 200) -> int:
    return success if result.error is None else PatchbayError.status_of(result.error.code)


def _owed(request: Request, hub: Hub) -> OwedStart | None:
    """A bridge's ask that a generate be answered later (a module's alone), if it made one."""
    raw = request.headers.get(OWED_HEADER)
    if raw is None:
        return None
    if not valid_module_token(hub.secret, request.headers.get(MODULE_TOKEN_HEADER)):
        raise AuthenticationFailed(f"{OWED_HEADER} needs this installation's module token")
    try:
        return OwedStart.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidRequest(f"{OWED_HEADER} is not a valid ask: {exc.errors()[0]['msg']}") from exc
