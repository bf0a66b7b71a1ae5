"""patchbay's errors in OpenAI's error shape, with the status OpenAI's clients expect."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from patchbay.errors import PatchbayError

_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",  # OpenAI's, with the code `invalid_api_key`
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(
    message: str, *, status: int, code: str | None, param: str | None = None
) -> dict[str, object]:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_error(exc: PatchbayError) -> JSONResponse:
    headers = {"Retry-After": "2"} if exc.retryable else None
    return JSONResponse(
        error_body(exc.message, status=exc.status, code=exc.code),
        status_code=exc.status,
        headers=headers,
    )


def too_large_body(message: str) -> dict[str, object]:
    return error_body(message, status=413, code="payload_too_large")
