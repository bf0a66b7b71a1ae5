"""The page's turns and regenerates carry the id the page made for each as their `delivery_id`, so
that one sent again after its answer was lost is taken once; ids of another shape stop here."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import orjson
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from patchbay.errors import InvalidRequest

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# What the page makes (32 hex digits), or another id as random: a short one could be an earlier
# message's, and the core would take the new message for that one and never answer it.
MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
TURNS = frozenset({"turns", "turns/upload"})
REGENERATE = re.compile(r"messages/[^/]+/regenerate")
STEP = 64 * 1024  # how much more of a form is looked at until its `turn` field has been read


async def check_message_id(request: Request, path: str) -> None:
    """Refuse a turn or a regenerate whose `delivery_id` the page would not have made. A body
    that is not one at all goes on as it is, for the core to refuse in its own words."""
    if request.method != "POST" or not (path in TURNS or REGENERATE.fullmatch(path)):
        return
    sent = await _turn_of(request, upload=path == "turns/upload")
    given = sent.get("delivery_id") if isinstance(sent, dict) else None
    if given is not None and not (isinstance(given, str) and MESSAGE_ID.fullmatch(given)):
        raise InvalidRequest(
            "delivery_id: a message's id is 16 to 64 letters, digits, '-' or '_'; "
            "reload the page and send the message again"
        )


async def _turn_of(request: Request, *, upload: bool) -> object:
    """The turn (or regenerate) as the core will read it: the JSON body, or a form's `turn`
    field."""
    body = await request.body()  # held for the proxy, which sends it on as it came
    try:
        raw = first_field(body, request.headers.get("content-type", ""), "turn") if upload else body
        return None if raw is None else orjson.loads(raw)
    except ValueError:  # not JSON, or not a form (FormParserError is one too)
        return None


def first_field(body: bytes, content_type: str, name: str) -> bytes | None:
    """The value of the first field `name` (a part without a file name) of a multipart/form-data
    `body`, read up to that field's end: the page sends the turn before its files, which are not
    looked at (parsing a 30 MB form whole took ~50 ms, the first one ~0.2 s, spooled to disk).

    A form with two such fields (which the page never makes) is read by the core to its last."""
    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        return None
    field = _Field(name.encode())
    parser = MultipartParser(boundary, field.callbacks())
    for start in range(0, len(body), STEP):
        parser.write(body[start : start + STEP])
        if field.value is not None:
            return field.value
    return None


class _Field:
    """Collects one named field's value as a `MultipartParser` goes through the form."""

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.value: bytes | None = None
        self._header = bytearray()
        self._disposition = b""
        self._data: bytearray | None = None  # the part being read is the field wanted

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _begin(self) -> None:
        self._disposition, self._data = b"", None
        self._header.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition += data[start:end]

    def _header_end(self) -> None:
        self._header.clear()

    def _headers_finished(self) -> None:
        options = parse_options_header(self._disposition)[1]
        if options.get(b"name") == self.name and b"filename" not in options:
            self._data = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._data is not None and self.value is None:
            self._data += data[start:end]

    def _part_end(self) -> None:
        if self._data is not None and self.value is None:
            self.value = bytes(self._data)
