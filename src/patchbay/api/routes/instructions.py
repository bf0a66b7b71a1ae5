"""`POST /v1/instructions`: seed 003's instructions over HTTP, one or a batch.

Every answer is an instruction envelope, errors included (bad JSON, a bad key), so a bridge such as
the RabbitMQ consumer can pass it on unchanged.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from patchbay.api.deps import HubDep, bearer_key
from patchbay.core.instructions.executor import error_result, parse
from patchbay.errors import PatchbayError
from patchbay.schemas.instructions import InstructionResult

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
        body = parse(await request.body())
    except PatchbayError as exc:
        return _json(error_result(exc), exc.status)
    if isinstance(body, list):
        results = [await hub.instructions.run(actor, item, transport=transport) for item in body]
        return _json(results, 200)
    result = await hub.instructions.run(actor, body, transport=transport)
    status = 200 if result.error is None else PatchbayError.status_of(result.error.code)
    return _json(result, status)
