"""Errors keep their class, status and retryability across the wire."""

from __future__ import annotations

from patchbay.errors import ModelNotFound, ProviderTimeout, QueueFull, error_from_dict


def test_known_codes_come_back_as_their_class() -> None:
    error = error_from_dict({"code": "model_not_found", "message": "no"}, 404)
    assert isinstance(error, ModelNotFound) and error.message == "no"
    assert isinstance(error_from_dict(ProviderTimeout("t").to_dict(), 504), ProviderTimeout)
    assert error_from_dict(QueueFull("q").to_dict(), 429).retryable


def test_unknown_codes_keep_status_and_retryability() -> None:
    error = error_from_dict({"code": "weird", "message": "m", "retryable": True}, 418)
    assert (error.code, error.status, error.retryable) == ("weird", 418, True)
