"""Turns and jobs: start a turn, follow a job's events (resumable), or wait for its end."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException  # what Starlette raises; FastAPI's derives from it

from patchbay.api.deps import CurrentUser, HubDep, current_user, get_hub
from patchbay.api.sse import SSE_HEADERS, encode_all, resume_point
from patchbay.core.attachments import Upload
from patchbay.core.hub import Hub
from patchbay.errors import InvalidRequest
from patchbay.json_body import documented, read_body
from patchbay.schemas.jobs import JobRead
from patchbay.schemas.turns import Regenerate, TurnCreate, TurnRead, TurnResult

router = APIRouter(prefix="/v1", tags=["turns"])


def _turn_headers(turn: TurnRead) -> dict[str, str]:
    return {
        "X-Patchbay-Chat-Id": turn.chat_id,
        "X-Patchbay-Job-Id": turn.job_id,
        "X-Patchbay-User-Message-Id": turn.user_message_id,
        "X-Patchbay-Message-Id": turn.assistant_message_id,
        "X-Patchbay-Model": turn.model,
    }


@router.post(
    "/turns",
    status_code=202,
    response_model=TurnRead | TurnResult,
    responses={200: {"description": "the outcome, with `?wait=true`"}},
    openapi_extra=documented(TurnCreate),
)
async def create_turn(
    request: Request,
    wait: Annotated[bool, Query(description="answer when the job has ended")] = False,
) -> object:
    """Store a turn and start its job.

    Answers at once with the ids (202); with `Accept: text/event-stream`, with the job's events as
    they happen; with `?wait=true`, with the job's outcome when it ends.
    """
    return await start_turn(request)  # declared for the docs; `HotRoutes` serves it


async def start_turn(request: Request) -> Response:
    """`POST /v1/turns`. Every turn from every channel comes this way, so the app serves it as a
    hot route (see `hot_routes`), and it reads the caller, the body and `wait` itself."""
    hub = await get_hub(request)
    user = await current_user(request, hub)
    turn = await read_body(request, TurnCreate)
    wait = _flag(request, "wait")
    return await _answer(await hub.turns.start(user, turn), request, hub, wait=wait)


_BOOL = TypeAdapter(bool)


def _flag(request: Request, name: str) -> bool:
    """A true/false query parameter, read as FastAPI reads one (`true`, `1`, `yes`, `on`, …)."""
    value = request.query_params.get(name)
    if value is None:
        return False
    try:
        return _BOOL.validate_python(value)
    except ValidationError as exc:
        raise InvalidRequest(f"query.{name}: {exc.errors()[0]['msg']}") from exc


@router.post(
    "/turns/upload",
    status_code=202,
    response_model=TurnRead | TurnResult,
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "turn": {"type": "string", "description": "the TurnCreate, as JSON"},
                            "files": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            },
                        },
                        "required": ["turn"],
                    }
                }
            }
        }
    },
)
async def create_turn_with_files(
    request: Request,
    hub: HubDep,
    user: CurrentUser,
    wait: Annotated[bool, Query(description="answer when the job has ended")] = False,
) -> object:
    """`POST /v1/turns` as multipart/form-data: a `turn` field (the turn as JSON) and files,
    each turned into text by a helper and kept with the message."""
    try:
        form = await request.form(max_files=20, max_fields=5)
    except (ValueError, KeyError, HTTPException) as exc:
        raise InvalidRequest(f"send multipart/form-data with a `turn` field: {exc}") from exc
    try:
        raw = form.get("turn")
        if not isinstance(raw, str):
            raise InvalidRequest("the `turn` field (the turn as JSON) is missing")
        try:
            turn = TurnCreate.model_validate_json(raw)
        except ValidationError as exc:
            raise InvalidRequest(f"turn: {exc.errors()[0]['msg']}") from exc
        uploads = []
        for item in form.getlist("files"):
            if isinstance(item, UploadFile):
                media_type = item.content_type or "application/octet-stream"
                uploads.append(Upload(media_type, await item.read(), item.filename))
    finally:
        await form.close()
    return await _answer(await hub.turns.start(user, turn, uploads), request, hub, wait=wait)


@router.post(
    "/messages/{message_id}/regenerate",
    status_code=202,
    response_model=TurnRead | TurnResult,
    responses={200: {"description": "the outcome, with `?wait=true`"}},
)
async def regenerate(
    message_id: str,
    request: Request,
    hub: HubDep,
    user: CurrentUser,
    data: Regenerate | None = None,
    wait: Annotated[bool, Query(description="answer when the job has ended")] = False,
) -> object:
    """Answer a question again (`message_id`: the question or one of its answers, by id or
    number). The new answer is a sibling of the earlier ones and becomes the chat's current
    branch; it answers like `POST /v1/turns`, and, like a turn, a regenerate whose
    `delivery_id` its channel gave before is a 409 `duplicate_delivery` naming that one's job."""
    created = await hub.turns.regenerate(user, message_id, data or Regenerate())
    return await _answer(created, request, hub, wait=wait)


async def _answer(created: TurnRead, request: Request, hub: Hub, *, wait: bool) -> Response:
    """The ids at once; the events as they happen (SSE); or the outcome once there is one."""
    if "text/event-stream" in request.headers.get("accept", ""):
        headers = {**SSE_HEADERS, **_turn_headers(created)}
        events = hub.jobs.follow(created.job_id)
        return StreamingResponse(
            encode_all(events), media_type="text/event-stream", headers=headers
        )
    if wait:
        result = TurnResult(turn=created, outcome=await hub.jobs.outcome(created.job_id))
        return Response(result.model_dump_json(exclude_none=True), media_type="application/json")
    return Response(created.model_dump_json(), status_code=202, media_type="application/json")


@router.get("/jobs/{job_id}", response_model=JobRead)
async def read_job(job_id: str, hub: HubDep, user: CurrentUser) -> JobRead:
    return await hub.jobs.job(user, job_id)


@router.delete("/jobs/{job_id}", response_model=JobRead)
async def cancel_job(job_id: str, hub: HubDep, user: CurrentUser) -> JobRead:
    """Cancel a queued or running job: it stops within a second and keeps its answer so far,
    marked cancelled. Cancelling a job that has ended changes nothing."""
    return await hub.turns.cancel(user, job_id)


@router.get("/jobs/{job_id}/events")
async def job_events(
    job_id: str,
    request: Request,
    hub: HubDep,
    user: CurrentUser,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> StreamingResponse:
    """The job's events as SSE; resumes after `Last-Event-ID` (or `?after=`) exactly once each."""
    events = await hub.jobs.events(user, job_id, after=resume_point(request, after))
    return StreamingResponse(
        encode_all(events), media_type="text/event-stream", headers=SSE_HEADERS
    )
