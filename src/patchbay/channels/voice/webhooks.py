"""What Twilio's voice webhooks say: the call and its caller (and whether they hid their number),
the question a webhook asks, and whether the call is over."""

from __future__ import annotations

import time

from fastapi import HTTPException, Request

from patchbay.channels.base import delivery_key, unique_delivery_id
from patchbay.channels.voice.calls import Asked

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"  # the same on Twilio's retries of a webhook
_HIDDEN = ("anonymous", "restricted", "unknown", "blocked", "unavailable", "private")
_KEYPAD = str.maketrans("abcdefghijklmnopqrstuvwxyz", "22233344455566677778889999")
WITHHELD = frozenset([*_HIDDEN, *(f"+{word.translate(_KEYPAD)}" for word in _HIDDEN)])
# The statuses of Twilio's status callback for a call that is over (the caller hung up, or the
# call never got through): nobody is listening for its answers any more.
CALL_ENDED = frozenset(["completed", "busy", "failed", "no-answer", "canceled"])


def asked(form: dict[str, str], request: Request) -> Asked:
    """The question a webhook asks, its delivery named by what stays the same when Twilio sends
    the webhook again: the recording, or else the idempotency token. Without either (a webhook
    that did not come from Twilio as documented) it is new each time."""
    token = request.headers.get(IDEMPOTENCY_HEADER) or None
    said = form.get("RecordingSid") or token or unique_delivery_id()
    return Asked(delivery_key(call_sid(form), said), int(time.time()))


def withheld(number: str) -> bool:
    """Whether the caller hid their number: Twilio then sends a word (`anonymous`) or the word's
    keypad digits (+266696687) in place of one. (A Twilio Client or SIP caller, `client:ann`,
    `sip:ann@example.org`, has an address without digits, and is no hidden one.)"""
    return number.strip().lower() in WITHHELD


def caller(form: dict[str, str]) -> str:
    if not form.get("From"):
        raise HTTPException(400, "a Twilio voice webhook has a From field")
    return form["From"]


def call_sid(form: dict[str, str]) -> str:
    if not form.get("CallSid"):
        raise HTTPException(400, "a Twilio voice webhook has a CallSid field")
    return form["CallSid"]
