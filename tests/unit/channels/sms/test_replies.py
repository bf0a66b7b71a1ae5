"""What the SMS and voice channels say when there is no answer to give."""

from __future__ import annotations

import pytest

from patchbay.channels.sms.replies import TRY_LATER, answer_text, sorry
from patchbay.errors import CoreUnavailable, InvalidRequest, PatchbayError, PayloadTooLarge
from patchbay.schemas.turns import TurnResult


def result(kind: str, content: str | None) -> TurnResult:
    turn = {"chat_id": "c", "job_id": "j", "user_message_id": "u", "assistant_message_id": "a"}
    outcome = {"job_id": "j", "seq": 3, "type": kind, "content": content}
    return TurnResult.model_validate({"turn": {**turn, "model": "m"}, "outcome": outcome})


@pytest.mark.parametrize(
    ("kind", "content", "text"),
    [
        ("done", "Hi.", "Hi."),
        ("done", None, "(no answer)"),
        ("cancelled", "Half an", "Half an"),
        ("cancelled", None, "(the answer was stopped)"),
        ("failed", "partial", TRY_LATER),
    ],
)
def test_answer_text(kind: str, content: str | None, text: str) -> None:
    assert answer_text(result(kind, content)) == text


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PayloadTooLarge("a file is over the limit of 10 MB"), "Please send something smaller"),
        (InvalidRequest("no helper reads image/png"), "could not take that message: no helper"),
        (CoreUnavailable("the core is down"), TRY_LATER),
    ],
)
def test_apologies_say_what_to_do(error: PatchbayError, expected: str) -> None:
    assert expected in sorry(error)
