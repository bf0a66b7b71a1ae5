"""The helper's HTTP side, in memory: the contract's routes, and every failure as a JSON error."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import BaseModel
from starlette.requests import Request
from starlette.testclient import TestClient

from patchbay.helpers import Helper, ToText
from patchbay.helpers.app import create_app, read_body


class Numbers(BaseModel):
    a: int
    b: int


class Sum(BaseModel):
    sum: int


def build() -> Helper:
    helper = Helper("calc", description="Adds numbers.", max_body_bytes=1000)

    @helper.tool
    async def add(numbers: Numbers) -> Sum:
        """a + b."""
        return Sum(sum=numbers.a + numbers.b)

    @helper.tool
    async def lies(numbers: Numbers) -> Sum:
        """Answers with a string where a number belongs."""
        return Sum.model_construct(sum="many")  # type: ignore[arg-type]

    @helper.tool
    async def crashes(numbers: Numbers) -> Sum:
        """Raises."""
        raise RuntimeError("the abacus broke")

    @helper.tool(timeout_s=0.05)
    async def dawdles(numbers: Numbers) -> Sum:
        """Sleeps past its timeout."""
        await asyncio.sleep(5)
        raise AssertionError("not reached")

    @helper.to_text("text/plain")
    async def read(data: bytes, media_type: str) -> ToText:
        return ToText(text=data.decode().upper())

    return helper


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(build(), base_url="http://127.0.0.1:8899")) as test_client:
        yield test_client


def error(response: object) -> tuple[int, str]:
    assert hasattr(response, "status_code") and hasattr(response, "json")
    return response.status_code, response.json()["error"]["code"]


def test_manifest_and_health(client: TestClient) -> None:
    manifest = client.get("/manifest").json()
    assert manifest["base_url"] == "http://127.0.0.1:8899"
    assert [c["name"] for c in manifest["capabilities"]] == [
        "add",
        "lies",
        "crashes",
        "dawdles",
        "read",
    ]
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/healthz").json() == {"status": "ok"}  # as `patchbay up` checks modules


def test_a_tool_call_round_trip(client: TestClient) -> None:
    assert client.post("/capabilities/add", json={"a": 2, "b": 3}).json() == {"sum": 5}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"a": 2}', "add: b: Field required"),
        (b'{"a": "two", "b": 3}', "add: a: Input should be a valid integer"),
        (b"[1, 2]", "Input should be an object"),
        (b"{oops", "Invalid JSON"),
    ],
)
def test_bad_input_is_a_400_naming_the_problem(
    client: TestClient, body: bytes, message: str
) -> None:
    response = client.post("/capabilities/add", content=body)
    assert error(response) == (400, "invalid_request")
    assert message in response.json()["error"]["message"]


def test_failures_of_the_capability_itself_are_clear_500s(client: TestClient) -> None:
    lies = client.post("/capabilities/lies", json={"a": 1, "b": 1})
    assert error(lies) == (500, "invalid_output")
    assert "lies returned output its own schema rejects: sum:" in lies.json()["error"]["message"]
    crashes = client.post("/capabilities/crashes", json={"a": 1, "b": 1})
    assert error(crashes) == (500, "capability_failed")
    assert "RuntimeError: the abacus broke" in crashes.json()["error"]["message"]
    dawdles = client.post("/capabilities/dawdles", json={"a": 1, "b": 1})
    assert error(dawdles) == (504, "capability_timeout")
    assert dawdles.json()["error"]["retryable"] is True


def test_unknown_capability_is_a_404_listing_the_known_ones(client: TestClient) -> None:
    response = client.post("/capabilities/multiply", json={})
    assert error(response) == (404, "not_found")
    assert "it has: add, lies, crashes, dawdles, read" in response.json()["error"]["message"]
    assert client.get("/capabilities/add").status_code == 405


def test_bodies_over_the_limit_are_refused_with_413(client: TestClient) -> None:
    declared = client.post("/capabilities/read", content=b"x" * 1001)
    assert error(declared) == (413, "payload_too_large")
    assert "over 1,000 bytes" in declared.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(5):
            yield b"y" * 300

    streamed = client.post(
        "/capabilities/read", content=chunks(), headers={"Content-Type": "text/plain"}
    )
    assert error(streamed) == (413, "payload_too_large")


async def test_a_large_body_is_read_without_a_second_copy_of_it() -> None:
    size, chunk = 32 * 1024 * 1024, 64 * 1024  # a video may be 500 MB, sent as uvicorn's chunks

    async def receive() -> AsyncIterator[dict[str, object]]:
        for sent in range(0, size, chunk):
            yield {"type": "http.request", "body": b"v" * chunk, "more_body": sent + chunk < size}

    messages = receive()
    request = Request({"type": "http", "headers": []}, receive=messages.__anext__)
    tracemalloc.start()
    try:
        body = await read_body(request, limit=size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(body) == size
    assert peak < size * 1.5  # the chunks joined at the end: twice the body


def test_to_text_takes_the_raw_body_and_its_media_type(client: TestClient) -> None:
    ok = client.post(
        "/capabilities/read",
        content=b"shout",
        headers={"Content-Type": "Text/Plain; charset=utf-8"},
    )
    assert ok.json()["text"] == "SHOUT"
    wrong = client.post(
        "/capabilities/read", content=b"\x89PNG", headers={"Content-Type": "image/png"}
    )
    assert error(wrong) == (400, "unsupported_media_type")
    empty = client.post("/capabilities/read", content=b"", headers={"Content-Type": "text/plain"})
    assert error(empty) == (400, "empty_input")
