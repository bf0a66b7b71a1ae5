"""Errors keep their class, status and retryability across the wire."""

from __future__ import annotations

from patchbay.errors import (
    DuplicateDelivery,
    ModelNotFound,
    ProviderTimeout,
    QueueFull,
    error_from_dict,
)


def test_known_codes_come_back_as_their_class() -> None:
    error = error_from_dict({"code": "model_not_found", "message": "no"}, 404)
    assert isinstance(error, ModelNotFound) and error.message == "no"
    assert isinstance(error_from_dict(ProviderTimeout("t").to_dict(), 504), ProviderTimeout)
    assert error_from_dict(QueueFull("q").to_dict(), 429).retryable


def test_unknown_codes_keep_status_and_retryability() -> None:
    error = error_from_dict({"code": "weird", "message": "m", "retryable": True}, 418)
    assert (error.code, error.status, error.retryable) == ("weird", 418, True)


def test_a_duplicate_delivery_keeps_the_ids_of_the_turn_that_took_it() -> None:
    sent = DuplicateDelivery("delivered before", chat_id="c1", message_id="m1", job_id="j1")
    error = error_from_dict(sent.to_dict(), 409)
    assert isinstance(error, DuplicateDelivery) and error.status == 409
    assert (error.chat_id, error.message_id, error.job_id) == ("c1", "m1", "j1")
