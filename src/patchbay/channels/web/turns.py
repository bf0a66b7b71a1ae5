"""The page's turns and regenerates carry the id the page made for each as their `delivery_id`, so
that one sent again after its answer was lost is taken once; ids of another shape stop here."""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
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


async def checked_body(request: Request, path: str) -> AsyncIterable[bytes]:
    """The request's body as it comes, for the proxy to pass on; in a turn or a regenerate, a
    `delivery_id` the page would not have made is refused (`InvalidRequest`). A JSON body is read
    whole and checked now (the page's are a message's text); a form is checked as it passes, each
    piece before it goes on, so the core never gets the whole of a refused one. A body that is not
    a turn at all goes on as it is, for the core to refuse in its own words."""
    if request.method != "POST" or not (path in TURNS or REGENERATE.fullmatch(path)):
        return request.stream()
    if path == "turns/upload":
        return _checked_form(request.stream(), request.headers.get("content-type", ""))
    _check(await request.body())
    return request.stream()  # the body read above


async def _checked_form(chunks: AsyncIterable[bytes], content_type: str) -> AsyncIterator[bytes]:
    """`chunks` of a multipart/form-data body, its `turn` field checked once it has passed."""
    field = FirstField.of(content_type, "turn")
    async for chunk in chunks:
        if field is not None and field.feed(chunk):
            _check(field.value)
            field = None
        yield chunk


def _check(raw: bytes | None) -> None:
    """Refuse a turn (or regenerate), as JSON, whose `delivery_id` the page would not make."""
    try:
        sent = None if raw is None else orjson.loads(raw)
    except ValueError:  # not JSON: the core says so
        return
    given = sent.get("delivery_id") if isinstance(sent, dict) else None
    if given is not None and not (isinstance(given, str) and MESSAGE_ID.fullmatch(given)):
        raise InvalidRequest(
            "delivery_id: a message's id is 16 to 64 letters, digits, '-' or '_'; "
            "reload the page and send the message again"
        )


class FirstField:
    """The value of the first field `name` (a part without a file name) of a multipart/form-data
    body fed to it piece by piece, looked for up to that field's end: the page sends the turn
    before its files, which are not looked at.

    A form with two such fields (which the page never makes) is read by the core to its last."""

    def __init__(self, boundary: bytes, name: str) -> None:
        self.value: bytes | None = None
        self._part = _Part(name.encode())
        self._parser = MultipartParser(boundary, self._part.callbacks())

    @classmethod
    def of(cls, content_type: str, name: str) -> FirstField | None:
        """One for a form of this `Content-Type`; None if it is not a form (no boundary)."""
        boundary = parse_options_header(content_type)[1].get(b"boundary")
        return cls(boundary, name) if boundary else None

    def feed(self, piece: bytes) -> bool:
        """Read the form on; whether the looking is over (`value` is the field's, or None if
        what came is not a form)."""
        try:
            self._parser.write(piece)
        except ValueError:  # FormParserError: not a form after all
            return True
        self.value = self._part.value
        return self.value is not None


class _Part:
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
