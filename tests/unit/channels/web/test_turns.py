"""The web channel's check of a turn's message id, on JSON bodies and on forms with files, as the
body passes on to the core."""

from __future__ import annotations

import orjson
import pytest
from python_multipart.multipart import MultipartParser
from starlette.requests import Request

from patchbay.channels.web.turns import FirstField, checked_body
from patchbay.errors import InvalidRequest

BOUNDARY = "----pageFormBoundary7MA4YWxkTrZu0gW"
FORM = f"multipart/form-data; boundary={BOUNDARY}"
GOOD = "0f8e4c2a9b7d41e3a5c6d8e9f0a1b2c3"
CHUNK = 65536  # what the server hands the app at a time


def part(name: str, value: bytes, *, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    kind = "Content-Type: application/octet-stream\r\n" if filename else ""
    return (
        f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n".encode()
        + value
        + b"\r\n"
    )


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def turn(delivery_id: object) -> bytes:
    return orjson.dumps({"text": "hi", "channel": "web", "delivery_id": delivery_id})


def request(body: bytes, *, path: str = "/api/turns/upload", content_type: str = FORM) -> Request:
    chunks = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)] or [b""]

    async def receive() -> dict[str, object]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    headers = [(b"content-type", content_type.encode())]
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    return Request(scope, receive)


async def passed(
    request: Request, path: str = "turns/upload", *, into: list[bytes] | None = None
) -> bytes:
    """The body the channel passes on to the core, piece by piece into `into`, and whole."""
    pieces = [] if into is None else into
    async for piece in await checked_body(request, path):
        pieces.append(piece)
    return b"".join(pieces)


async def test_a_form_is_read_only_up_to_its_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    write = MultipartParser.write

    def counted(parser: MultipartParser, data: bytes) -> int:
        seen.append(len(data))
        return write(parser, data)

    monkeypatch.setattr(MultipartParser, "write", counted)
    upload = bytes(30 * 1024 * 1024)  # a 30 MB file after the turn, as the page sends it
    body = form(part("turn", turn(GOOD)), part("files", upload, filename="big.bin"))
    pieces: list[bytes] = []
    assert await passed(request(body), into=pieces) == body
    assert 0 < sum(seen) <= CHUNK  # the file was not parsed
    assert len(pieces) > 400  # nor kept: it went on as it came


@pytest.mark.parametrize("order", ["turn first", "files first"])
async def test_a_form_with_an_id_the_page_would_not_make_is_refused(order: str) -> None:
    parts = [part("turn", turn("short")), part("files", b"x" * 200_000, filename="a.txt")]
    body = form(*(parts if order == "turn first" else reversed(parts)))
    pieces: list[bytes] = []
    with pytest.raises(InvalidRequest, match="a message's id is 16 to 64"):
        await passed(request(body), into=pieces)
    assert len(b"".join(pieces)) < len(body)  # the core never had all of it


async def test_a_file_called_turn_is_not_the_turn() -> None:
    body = form(part("turn", turn("short"), filename="turn.json"), part("turn", turn(GOOD)))
    field = FirstField.of(FORM, "turn")
    assert field is not None and field.feed(body) and field.value == turn(GOOD)
    assert await passed(request(body)) == body


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (form(part("files", b"x", filename="a.txt")), FORM),  # no turn: the core says so
        (form(part("turn", b"not json")), FORM),
        (form(part("turn", turn("short"))), "multipart/form-data"),  # no boundary
        (b"--nonsense\r\n\r\n", FORM),
        (turn("short"), "application/json"),  # not a form at all
    ],
    ids=["no turn", "not json", "no boundary", "not a form", "json body"],
)
async def test_what_is_not_a_turn_goes_on_for_the_core_to_refuse(
    body: bytes, content_type: str
) -> None:
    assert await passed(request(body, content_type=content_type)) == body


async def test_a_json_turn_is_checked() -> None:
    assert await passed(request(turn(GOOD), path="/api/turns"), "turns") == turn(GOOD)
    with pytest.raises(InvalidRequest):
        await checked_body(request(turn("a" * 65), path="/api/turns"), "turns")  # before any goes


async def test_a_regenerates_id_is_checked_as_a_messages() -> None:
    path = "messages/01HZX/regenerate"

    def regenerate(body: bytes) -> Request:
        return request(body, path=f"/api/{path}", content_type="application/json")

    for body in (turn(GOOD), b"", b"{}"):  # made by the page, or none given
        assert await passed(regenerate(body), path) == body
    with pytest.raises(InvalidRequest, match="a message's id is 16 to 64"):
        await checked_body(regenerate(turn("short")), path)
