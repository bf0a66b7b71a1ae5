"""What the SMS and voice channels say when there is no answer to give: a turn that failed, a
message that could not be taken, a sender who floods."""

from __future__ import annotations

from patchbay.errors import PatchbayError, PayloadTooLarge
from patchbay.schemas.jobs import JobEvent
from patchbay.schemas.turns import TurnResult

FLOODED = "You are sending messages faster than I can answer. Please wait a minute, then try again."
TRY_LATER = "Sorry, something went wrong on my side. Please try again in a while."


def answer_text(result: TurnResult) -> str:
    """The answer a finished turn gives, or an apology when it failed."""
    return outcome_text(result.outcome)


def outcome_text(outcome: JobEvent) -> str:
    """The answer a job's terminal event gives, or an apology when it failed."""
    if outcome.type == "done":
        return outcome.content or "(no answer)"
    if outcome.type == "cancelled":
        return outcome.content or "(the answer was stopped)"
    return TRY_LATER


def sorry(exc: PatchbayError) -> str:
    """An apology that says what the sender can do about `exc`."""
    if isinstance(exc, PayloadTooLarge):
        return f"Sorry, {exc.message}. Please send something smaller."
    if exc.status < 500 and not exc.retryable:
        return f"Sorry, I could not take that message: {exc.message}"
    return TRY_LATER
