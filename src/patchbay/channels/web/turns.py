"""The page's turns carry the id the page made for each message as their `delivery_id`, so that a
message sent again after its answer was lost is stored once; ids of another shape stop here."""

from __future__ import annotations

import re

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request

from patchbay.errors import InvalidRequest

# What the page makes (32 hex digits), or another id as random: a short one could be an earlier
# message's, and the core would take the new message for that one and never answer it.
MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
TURNS = frozenset({"turns", "turns/upload"})


async def check_message_id(request: Request, path: str) -> None:
    """Refuse a turn whose `delivery_id` the page would not have made. A body that is not a
    turn at all goes on as it is, for the core to refuse in its own words."""
    if request.method != "POST" or path not in TURNS:
        return
    turn = await _turn_of(request, upload=path == "turns/upload")
    given = turn.get("delivery_id") if isinstance(turn, dict) else None
    if given is not None and not (isinstance(given, str) and MESSAGE_ID.fullmatch(given)):
        raise InvalidRequest(
            "delivery_id: a message's id is 16 to 64 letters, digits, '-' or '_'; "
            "reload the page and send the message again"
        )


async def _turn_of(request: Request, *, upload: bool) -> object:
    """The turn as the core will read it: the JSON body, or a form's `turn` field."""
    body = await request.body()  # held for the proxy, which sends it on as it came
    try:
        if not upload:
            return orjson.loads(body)
        async with request.form(max_files=20, max_fields=5) as form:
            raw = form.get("turn")
        return orjson.loads(raw) if isinstance(raw, str) else None
    except (ValueError, KeyError, HTTPException):
        return None
