"""The web channel's proxy in front of a stand-in core: request bodies pass on as they come."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from patchbay.channels.web.app import create_app as create_web
from tests.conftest import free_port, make_settings
from tests.support.servers import serve_in_thread

pytestmark = pytest.mark.integration

PAGE = {"X-Patchbay-Web": "1"}
BOUNDARY = "pageFormBoundary7MA4YWxkTrZu0gW"
USER = {
    "id": "01HZX0000000000000000000AA",
    "number": 1,
    "name": "alice",
    "role": "user",
    "profile": {},
    "instruction_recording": False,
    "created_at": "2026-01-01T00:00:00Z",
}
MIB = 1024 * 1024
WAIT_S = 15.0  # for what the core should see at once: generous, on a loaded machine


@dataclass
class StandInCore:
    """The core's routes an upload meets, noting what reached it of each body."""

    first_bytes: threading.Event = field(default_factory=threading.Event)
    whole: list[int] = field(default_factory=list)  # the length of each body that came whole
    broken: threading.Event = field(default_factory=threading.Event)

    def app(self) -> Starlette:
        async def me(_request: Request) -> JSONResponse:
            return JSONResponse(USER)

        async def upload(request: Request) -> JSONResponse:
            received = 0
            try:
                async for chunk in request.stream():
                    received += len(chunk)
                    if received:
                        self.first_bytes.set()
            except ClientDisconnect:
                self.broken.set()
                raise
            self.whole.append(received)
            return JSONResponse({"received": received}, status_code=202)

        return Starlette(
            routes=[Route("/v1/me", me), Route("/v1/turns/upload", upload, methods=["POST"])]
        )


@pytest.fixture
def core() -> StandInCore:
    return StandInCore()


@pytest.fixture
def web(core: StandInCore, tmp_path: Path) -> Iterator[str]:
    core_port = free_port()
    settings = make_settings(
        tmp_path, core={"port": core_port}, web={"port": free_port(), "max_body_bytes": 4 * MIB}
    )
    with (
        serve_in_thread(core.app(), core_port),
        serve_in_thread(create_web(settings), settings.web.port) as url,
    ):
        yield url


def part(name: str, value: bytes, *, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def turn(delivery_id: str) -> bytes:
    return orjson.dumps({"text": "hi", "channel": "web", "delivery_id": delivery_id})


END = f"--{BOUNDARY}--\r\n".encode()
FORM = {**PAGE, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
COOKIE = {"patchbay_key": "pb-alice"}


def test_an_upload_reaches_the_core_while_it_is_still_being_sent(
    web: str, core: StandInCore
) -> None:
    head = (
        part("turn", turn("0f8e4c2a9b7d41e3a5c6d8e9f0a1b2c3"))
        + part("files", b"a" * MIB, filename="big.bin")[:-2]
    )
    tail = b"b" * MIB + b"\r\n" + END
    reached_early: list[bool] = []

    def body() -> Iterator[bytes]:
        yield head
        reached_early.append(core.first_bytes.wait(WAIT_S))  # before the rest is sent
        yield tail

    headers = {**FORM, "Content-Length": str(len(head) + len(tail))}
    answer = httpx.post(
        f"{web}/api/turns/upload", content=body(), headers=headers, cookies=COOKIE, timeout=60
    )
    assert answer.status_code == 202, answer.text
    assert reached_early == [True]  # not held back until the whole form had come
    assert answer.json() == {"received": len(head) + len(tail)} and core.whole == [len(head + tail)]


def test_a_body_past_the_limit_is_a_413_and_never_reaches_the_core_whole(
    web: str, core: StandInCore
) -> None:
    def body() -> Iterator[bytes]:  # no length declared: sent chunked
        yield part("turn", turn("0f8e4c2a9b7d41e3a5c6d8e9f0a1b2c3"))
        for _ in range(5):
            yield b"x" * MIB

    answer = httpx.post(
        f"{web}/api/turns/upload", content=body(), headers=FORM, cookies=COOKIE, timeout=60
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert core.broken.wait(WAIT_S) and core.whole == []


def test_a_form_whose_turn_comes_last_is_checked_before_the_core_has_it_whole(
    web: str, core: StandInCore
) -> None:
    form = part("files", b"x" * (2 * MIB), filename="a.bin") + part("turn", turn("short")) + END
    answer = httpx.post(
        f"{web}/api/turns/upload", content=form, headers=FORM, cookies=COOKIE, timeout=60
    )
    assert answer.status_code == 400
    assert "a message's id is 16 to 64" in answer.json()["error"]["message"]
    assert core.first_bytes.wait(WAIT_S)  # the form went on as it came
    assert core.broken.wait(WAIT_S) and core.whole == []  # and was broken off before its end
