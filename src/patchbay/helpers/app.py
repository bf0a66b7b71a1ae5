"""The HTTP side of a helper: the contract of `patchbay.schemas.helpers`, served by Starlette.

Inputs are checked before a capability runs (400, 413, 415-like 400s) and outputs after it
returns (500 `invalid_output`), so the core can trust what it gets. Errors have the core's shape,
`{"error": {"code", "message", "retryable"}}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from patchbay.errors import NotFound, PatchbayError
from patchbay.helpers.registration import Registration
from patchbay.helpers.sdk import CapabilityFailed, CapabilityTimeout, Helper, InputTooLarge, Tool

logger = logging.getLogger(__name__)


def create_app(
    helper: Helper, *, base_url: str, registration: Registration | None = None
) -> Starlette:
    """The helper's ASGI app; with a `registration`, it keeps itself registered with the core."""
    manifest = helper.manifest(base_url).model_dump(mode="json")

    async def get_manifest(_request: Request) -> Response:
        return JSONResponse(manifest)

    async def get_health(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def call_capability(request: Request) -> Response:
        return JSONResponse(await run_capability(helper, request))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await helper.startup()
        task = None if registration is None else asyncio.create_task(registration.keep())
        try:
            yield
        finally:
            if task is not None and registration is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await registration.deregister()
            await helper.shutdown()

    return Starlette(
        routes=[
            Route("/manifest", get_manifest, methods=["GET"]),
            Route("/health", get_health, methods=["GET"]),
            Route("/healthz", get_health, methods=["GET"]),  # what `patchbay up` probes
            Route("/capabilities/{name}", call_capability, methods=["POST"]),
        ],
        exception_handlers={PatchbayError: _patchbay_error},
        lifespan=lifespan,
    )


async def run_capability(helper: Helper, request: Request) -> Any:
    """Find the capability, read and check the body, run it within its timeout."""
    name = request.path_params["name"]
    impl = helper.find(name)
    if impl is None:
        known = ", ".join(c.name for c in helper.capabilities)
        raise NotFound(f"{helper.name} has no capability {name!r}; it has: {known}")
    body = await read_body(request, limit=helper.max_body_bytes)
    try:
        with anyio.fail_after(impl.timeout_s):
            if isinstance(impl, Tool):
                return await impl.call(body)
            return await impl.call(body, media_type_of(request))
    except TimeoutError as exc:
        raise CapabilityTimeout(f"{name} took over {impl.timeout_s:g}s") from exc
    except PatchbayError:
        raise
    except Exception as exc:  # a capability's bug becomes one clear 500, not a stack trace
        logger.exception("capability %s failed", name)
        raise CapabilityFailed(f"{name} failed: {type(exc).__name__}: {exc}"[:2000]) from exc


async def read_body(request: Request, *, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes.

    Gathered in one growing buffer that becomes the bytes returned: chunks joined at the end were
    a second copy of the whole body (a video's: 500 MB) while they were joined.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    body = io.BytesIO()
    async for chunk in request.stream():
        if body.tell() + len(chunk) > limit:
            raise _too_large(body.tell() + len(chunk), limit)
        body.write(chunk)
    return body.getvalue()


def media_type_of(request: Request) -> str:
    """The Content-Type without its parameters, lowercase (`text/html; charset=x` → `text/html`)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _too_large(size: int, limit: int) -> InputTooLarge:
    return InputTooLarge(
        f"the body is over {limit:,} bytes ({size:,} so far); send a smaller file "
        "or raise the helper's max_body_bytes"
    )


def error_body(exc: PatchbayError) -> dict[str, Any]:
    return {"error": exc.to_dict()}


async def _patchbay_error(_request: Request, exc: Exception) -> Response:
    if not isinstance(exc, PatchbayError):  # Starlette routes only these here
        raise exc
    if exc.status >= 500:
        logger.error("%s: %s", exc.code, exc.message)
    return JSONResponse(error_body(exc), status_code=exc.status)
