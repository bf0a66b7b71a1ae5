"""Every error patchbay raises on purpose, each with a wire `code`, an HTTP `status` and `retryable`.

    PatchbayError
    ├── InvalidRequest                    400
    │   ├── PayloadTooLarge               413
    │   └── InvalidInstruction, UnknownInstruction, InvalidJson
    ├── AuthenticationFailed              401
    ├── PermissionDenied                  403
    ├── NotFound                          404
    │   ├── UserNotFound, ChatNotFound, JobNotFound, ProviderNotFound
    │   ├── ModelNotFound, MessageNotFound, AssistantNotFound, HelperNotFound
    │   └── DeliveryNotFound
    ├── Conflict                          409
    │   └── UserExists, DuplicateDelivery
    ├── JobCancelled                      409 (a job's outcome, not raised to callers)
    ├── QueueFull                         429, retryable
    ├── HelperFailed                      502, retryable
    ├── ServiceUnavailable                503, retryable
    │   ├── StoreUnavailable
    │   └── CoreUnavailable
    │       └── CoreUnreachable       (nothing was sent)
    └── ProviderError                     502
        ├── ProviderUnavailable           502, retryable
        ├── ProviderTimeout               504, retryable
        └── ProviderProtocolError         502

The core raises these and never imports FastAPI; each entry point maps them to its own wire shape.
"""

from __future__ import annotations

from typing import Self


class PatchbayError(Exception):
    code = "internal_error"
    status = 500
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @staticmethod
    def status_of(code: str) -> int:
        """The HTTP status of an error code (500 for one this module does not define)."""
        cls = _BY_CODE.get(code)
        return 500 if cls is None else cls.status

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Self:
        """The error `to_dict` described, as a module receives it over the wire."""
        return cls(str(data.get("message", "unknown error")))


class InvalidRequest(PatchbayError):
    code = "invalid_request"
    status = 400


class PayloadTooLarge(InvalidRequest):
    code = "payload_too_large"
    status = 413


class JobCancelled(PatchbayError):
    """Not raised to callers: the reason a job's owner stopped it, as its outcome says."""

    code = "cancelled"
    status = 409


class InvalidJson(InvalidRequest):
    code = "invalid_json"


class InvalidInstruction(InvalidRequest):
    code = "invalid_instruction"


class UnknownInstruction(InvalidRequest):
    code = "unknown_instruction"


class AuthenticationFailed(PatchbayError):
    code = "invalid_api_key"
    status = 401


class PermissionDenied(PatchbayError):
    code = "permission_denied"
    status = 403


class NotFound(PatchbayError):
    code = "not_found"
    status = 404


class UserNotFound(NotFound):
    code = "user_not_found"


class ChatNotFound(NotFound):
    code = "chat_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class ProviderNotFound(NotFound):
    code = "provider_not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class HelperNotFound(NotFound):
    code = "helper_not_found"


class DeliveryNotFound(NotFound):
    """No turn took that delivery (yet): the channel process that has it may still be sending it."""

    code = "delivery_not_found"


class HelperFailed(PatchbayError):
    """A helper answered with an error, broke its schema, timed out or is unreachable."""

    code = "helper_failed"
    status = 502
    retryable = True


class AssistantNotFound(NotFound):
    code = "assistant_not_found"


class MessageNotFound(NotFound):
    code = "message_not_found"


class Conflict(PatchbayError):
    code = "conflict"
    status = 409


class UserExists(Conflict):
    code = "user_exists"


class DuplicateDelivery(Conflict):
    """A channel sent a message the core took before (the same `delivery_id`): nothing was stored
    or run again. It names the turn that took it, and says whether its answer is still owed to
    the channel (a turn with a `reply` whose answer the channel has not said it sent)."""

    code = "duplicate_delivery"

    def __init__(
        self, message: str, *, chat_id: str, message_id: str, job_id: str, owed: bool = False
    ) -> None:
        super().__init__(message)
        self.chat_id = chat_id
        self.message_id = message_id
        self.job_id = job_id
        self.owed = owed

    def to_dict(self) -> dict[str, object]:
        ids = {"chat_id": self.chat_id, "message_id": self.message_id, "job_id": self.job_id}
        return {**super().to_dict(), **ids, "owed": self.owed}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Self:
        return cls(
            str(data.get("message", "delivered before")),
            chat_id=str(data.get("chat_id", "")),
            message_id=str(data.get("message_id", "")),
            job_id=str(data.get("job_id", "")),
            owed=data.get("owed") is True,
        )


class QueueFull(PatchbayError):
    code = "queue_full"
    status = 429
    retryable = True


class ServiceUnavailable(PatchbayError):
    code = "service_unavailable"
    status = 503
    retryable = True


class StoreUnavailable(ServiceUnavailable):
    code = "store_unavailable"


class CoreUnavailable(ServiceUnavailable):
    code = "core_unavailable"


class CoreUnreachable(CoreUnavailable):
    """No connection to the core could be made: nothing was sent, so trying again is safe."""


class ProviderError(PatchbayError):
    code = "upstream_error"
    status = 502


class ProviderUnavailable(ProviderError):
    code = "upstream_unavailable"
    retryable = True


class ProviderTimeout(ProviderError):
    code = "upstream_timeout"
    status = 504
    retryable = True


class ProviderProtocolError(ProviderError):
    code = "upstream_protocol_error"


_BY_CODE: dict[str, type[PatchbayError]] = {}


def _index(cls: type[PatchbayError]) -> None:
    _BY_CODE.setdefault(cls.code, cls)
    for sub in cls.__subclasses__():
        _index(sub)


_index(PatchbayError)


def error_from_dict(data: dict[str, object], status: int) -> PatchbayError:
    """Rebuild an error a module received over the wire, keeping its class where the code is known."""
    code = str(data.get("code", ""))
    cls = _BY_CODE.get(code)
    if cls is None:
        error = PatchbayError.from_dict(data)
        error.code, error.status = code or "internal_error", status
        error.retryable = bool(data.get("retryable", False))
        return error
    return cls.from_dict(data)
