"""The WebSocket job channel (seed 002) end to end, with the `websockets` client against real servers."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from patchbay.api.app import create_app as create_core
from patchbay.channels.ws.app import create_app as create_ws
from patchbay.channels.ws.outbox import TOO_SLOW_REASON
from patchbay.config import Settings
from tests.conftest import ADMIN_KEY, free_port, make_settings
from tests.support.servers import serve_in_thread
from tests.support.stack import Stack, register_models, running_stack
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration

ENDS = ("done", "failed", "cancelled")


@contextmanager
def serve_ws(settings: Settings, **options: Any) -> Iterator[str]:
    """The WebSocket channel on a free port; yields its `ws://…/ws/` URL."""
    port = free_port()
    ws = settings.ws.model_copy(update={"port": port, **options})
    with serve_in_thread(create_ws(settings.model_copy(update={"ws": ws})), port) as url:
        yield url.replace("http://", "ws://") + "/ws/"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Without the llm log: a multi-megabyte answer (the slow client's) keeps it busy for seconds."""
    return make_settings(tmp_path, llm_log={"enabled": False})


@pytest.fixture
def ws_url(stack: Stack) -> Iterator[str]:
    with serve_ws(stack.settings) as url:
        yield url


@asynccontextmanager
async def client(
    url: str, key: str | None = None, **options: Any
) -> AsyncIterator[ClientConnection]:
    where = url if key is None else f"{url}?api_key={key}"
    async with connect(where, proxy=None, open_timeout=10, **options) as ws:
        yield ws


async def recv(ws: ClientConnection, timeout_s: float = 10) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
    return frame


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(json.dumps(frame))


async def updates(ws: ClientConnection, job_id: str) -> list[dict[str, Any]]:
    """The job's frames until its end (other jobs' frames are skipped)."""
    frames = []
    while True:
        frame = await recv(ws)
        if frame.get("job_id") == job_id:
            frames.append(frame)
            if frame["type"] in ENDS:
                return frames


async def add(ws: ClientConnection, query: str = "Hi", **extra: Any) -> str:
    await send(ws, {"type": "add", "id": "my-custom-id", "query": query, **extra})
    answer = await recv(ws)
    assert answer["type"] == "resp_add", answer
    assert answer["id"] == "my-custom-id"
    return str(answer["job_id"])


def text(frames: list[dict[str, Any]]) -> str:
    return "".join(f["message"] for f in frames if f["type"] == "running")


async def closed(ws: ClientConnection, timeout_s: float = 10) -> tuple[int | None, str | None]:
    """Read until the server closes; the close code and reason."""
    await drain(ws, timeout_s)
    return ws.close_code, ws.close_reason


async def drain(ws: ClientConnection, timeout_s: float = 10) -> int:
    """Read until the server closes; how many frames came first."""
    count = 0
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout_s)
            count += 1
    except ConnectionClosed:
        return count


async def test_add_streams_running_frames_then_done(
    stack: Stack, ws_url: str, upstream: MockUpstream
) -> None:
    async with client(ws_url, stack.admin_key) as ws:
        job_id = await add(ws, "How tall is it?")
        frames = await updates(ws, job_id)
    assert frames[0] == {"type": "pending", "job_id": job_id, "seq": 1, "position": 0}
    assert {f["type"] for f in frames[1:-1]} == {"running"}
    assert frames[-1] == {"type": "done", "job_id": job_id, "seq": frames[-1]["seq"]}
    assert text(frames) == upstream.reply
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    assert upstream.requests[-1]["messages"][-1] == {"role": "user", "content": "How tall is it?"}


async def test_seed_example_add_runs_its_template(
    stack: Stack, ws_url: str, upstream: MockUpstream
) -> None:
    assistant = {
        "streams": [
            {
                "settings": {"model": "mock-gpt"},
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"insert": "history"},
                    {"role": "user", "content": "{query}"},
                ],
            }
        ]
    }
    history = [
        {"role": "user", "content": "Where is the eiffel tower?"},
        {"role": "system", "content": "The Eiffel Tower is located in Paris, France."},
    ]
    async with client(ws_url, stack.admin_key) as ws:
        job_id = await add(ws, "How tall is it?", assistant=assistant, history=history)
        frames = await updates(ws, job_id)
    assert frames[-1]["type"] == "done"
    assert text(frames) == upstream.reply
    sent = upstream.requests[-1]["messages"]
    assert sent[0] == {"role": "system", "content": "You are a helpful assistant."}
    assert sent[-1] == {"role": "user", "content": "How tall is it?"}


async def test_a_stored_assistant_is_used_by_name(
    stack: Stack, ws_url: str, upstream: MockUpstream
) -> None:
    template = {
        "streams": [
            {
                "settings": {"model": "mock-gpt"},
                "messages": [
                    {"role": "system", "content": "Be a pirate."},
                    {"role": "user", "content": "{query}"},
                ],
            }
        ]
    }
    with stack.admin() as admin:
        made = admin.post("/v1/assistants", json={"name": "pirate", "template": template})
        made.raise_for_status()
    async with client(ws_url, stack.admin_key) as ws:
        job_id = await add(ws, "Ahoy?", assistant_name="pirate")
        assert (await updates(ws, job_id))[-1]["type"] == "done"
        await send(ws, {"type": "add", "id": "n", "query": "q", "assistant_name": "nobody"})
        answer = await recv(ws)
        assert answer["type"] == "failed" and answer["id"] == "n" and "nobody" in answer["message"]
    assert upstream.requests[-1]["messages"] == [
        {"role": "system", "content": "Be a pirate."},
        {"role": "user", "content": "Ahoy?"},
    ]


def stream(content: str = "{query}", **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], **fields}


@pytest.mark.parametrize(
    ("assistant", "says"),
    [
        ({"streams": [stream("{nope}")]}, "unknown placeholder {nope}"),
        ({"streams": [stream(), stream("{previous}")]}, "unknown placeholder {previous}"),
        ({"streams": [{"messages": [{"insert": "everything"}]}]}, "assistant.streams.0.messages"),
        ({"streams": []}, "assistant.streams"),
        ({"streams": [stream(provider="nowhere")]}, "nowhere"),
        ({"streams": [stream(settings={"model": "no-such-model"})]}, "no-such-model"),
    ],
)
async def test_template_errors_are_answered_with_failed(
    stack: Stack, ws_url: str, assistant: dict[str, Any], says: str
) -> None:
    async with client(ws_url, stack.admin_key) as ws:
        await send(ws, {"type": "add", "id": "t1", "query": "q", "assistant": assistant})
        answer = await recv(ws)
        assert answer["type"] == "failed" and answer["id"] == "t1", answer
        assert says in answer["message"]
        job_id = await add(ws)  # still usable
        assert (await updates(ws, job_id))[-1]["type"] == "done"


async def test_listen_to_a_finished_job_replays_it(
    stack: Stack, ws_url: str, upstream: MockUpstream
) -> None:
    async with client(ws_url, stack.admin_key) as first:
        job_id = await add(first)
        original = await updates(first, job_id)
    async with client(ws_url, stack.admin_key) as second:
        await send(second, {"type": "listen", "job_id": job_id})
        assert await updates(second, job_id) == original
    assert text(original) == upstream.reply


async def test_listen_to_a_running_job_from_another_connection(
    stack: Stack, ws_url: str, upstream: MockUpstream
) -> None:
    upstream.mode, upstream.delay_s = "drip", 0.05
    async with client(ws_url, stack.admin_key) as first, client(ws_url, stack.admin_key) as second:
        job_id = await add(first)
        await send(second, {"type": "listen", "job_id": job_id})
        theirs, mine = await asyncio.gather(updates(second, job_id), updates(first, job_id))
    assert theirs == mine
    assert text(mine) == upstream.reply and mine[-1]["type"] == "done"


async def test_listen_after_resumes_exactly_once_in_order(
    stack: Stack, ws_url: str, upstream: MockUpstream
) -> None:
    upstream.mode, upstream.delay_s = "drip", 0.1
    async with client(ws_url, stack.admin_key) as first:
        job_id = await add(first)
        seen = [await recv(first) for _ in range(3)]  # pending and two tokens
    assert [f["type"] for f in seen] == ["pending", "running", "running"]
    async with client(ws_url, stack.admin_key) as second:
        await send(second, {"type": "listen", "job_id": job_id, "after": seen[-1]["seq"]})
        rest = await updates(second, job_id)
    assert [f["seq"] for f in seen + rest] == list(range(1, len(seen) + len(rest) + 1))
    assert text(seen + rest) == upstream.reply
    assert rest[-1]["type"] == "done"


@contextmanager
def forgetful_stack(tmp_path: Path, upstream: MockUpstream) -> Iterator[Stack]:
    """A stack whose core keeps a finished job's events half a second."""
    settings = make_settings(tmp_path, jobs={"event_retention_s": 0.5})
    with running_stack(settings) as stack:
        register_models(stack, upstream.base_url)
        yield stack


async def test_listen_to_a_job_whose_events_are_gone_gets_its_answer(
    tmp_path: Path, upstream: MockUpstream
) -> None:
    """Past the events' retention, from the store: the answer as one token, then `done` (which
    carries no text of its own)."""
    with forgetful_stack(tmp_path, upstream) as stack, serve_ws(stack.settings) as url:
        async with client(url, stack.admin_key) as ws:
            job_id = await add(ws)
            await updates(ws, job_id)
            await asyncio.sleep(1.0)
            await send(ws, {"type": "listen", "job_id": job_id})
            again = await updates(ws, job_id)
    assert [f["type"] for f in again] == ["running", "done"]
    assert text(again) == upstream.reply


async def test_listen_after_the_end_says_nothing_more(
    tmp_path: Path, upstream: MockUpstream
) -> None:
    """A client that saw `done` and listens past it: nothing is left to send (it used to be told
    the stream ended early, and to listen again, for ever), whether the job's events are still
    in memory or gone."""
    with forgetful_stack(tmp_path, upstream) as stack, serve_ws(stack.settings) as url:
        async with client(url, stack.admin_key) as ws:
            job_id = await add(ws)
            last = (await updates(ws, job_id))[-1]["seq"]
            for wait_s in (0.0, 1.0):  # then past retention: from the store
                await asyncio.sleep(wait_s)
                await send(ws, {"type": "listen", "job_id": job_id, "after": last})
                with pytest.raises(TimeoutError):
                    await recv(ws, timeout_s=1)


async def test_listen_again_with_after_restarts_the_follower(stack: Stack, ws_url: str) -> None:
    async with client(ws_url, stack.admin_key) as ws:
        job_id = await add(ws)
        first = await updates(ws, job_id)
        await send(ws, {"type": "listen", "job_id": job_id, "after": first[-2]["seq"]})
        assert await updates(ws, job_id) == first[-1:]


async def test_cancel_ends_a_slow_job_with_cancelled(
    stack: Stack, ws_url: str, upstream: MockUpstream
) -> None:
    upstream.mode, upstream.delay_s = "slow", 6.0
    async with client(ws_url, stack.admin_key) as ws:
        job_id = await add(ws)
        assert (await recv(ws))["type"] == "pending"
        started = time.monotonic()
        await send(ws, {"type": "cancel", "job_id": job_id})
        frames = await updates(ws, job_id)
        assert time.monotonic() - started < upstream.delay_s / 2  # not when the model answers
    assert frames[-1]["type"] == "cancelled"
    with stack.admin() as admin:
        assert admin.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"


async def test_disconnecting_does_not_cancel_the_job(
    stack: Stack, ws_url: str, upstream: MockUpstream
) -> None:
    upstream.mode, upstream.delay_s = "drip", 0.05
    async with client(ws_url, stack.admin_key) as ws:
        job_id = await add(ws)
    async with client(ws_url, stack.admin_key) as ws:
        await send(ws, {"type": "listen", "job_id": job_id})
        frames = await updates(ws, job_id)
    assert frames[-1]["type"] == "done" and text(frames) == upstream.reply


@pytest.mark.parametrize("how", ["query", "header", "frame"])
async def test_authentication(
    stack: Stack, ws_url: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    key = stack.new_user("alice")
    url = f"{ws_url}?api_key={key}" if how == "query" else ws_url
    headers = {"Authorization": f"Bearer {key}"} if how == "header" else None
    async with connect(url, proxy=None, additional_headers=headers) as ws:
        if how == "frame":
            await send(ws, {"type": "auth", "api_key": key})
            assert await recv(ws) == {"type": "resp_auth", "user": "alice"}
        job_id = await add(ws)
        assert (await updates(ws, job_id))[-1]["type"] == "done"
    with stack.admin() as admin:
        job = admin.get(f"/v1/jobs/{job_id}")
    assert job.status_code == 404  # the job is alice's, not the admin's
    opened = [r.getMessage() for r in caplog.records if "WebSocket /ws/" in r.getMessage()]
    assert opened and all(key not in line for line in opened)


@pytest.mark.parametrize(
    ("first", "url_key"),
    [
        ({"type": "listen", "job_id": "01ABC"}, None),
        ("not json", None),
        ({"type": "auth", "api_key": "pb-wrong"}, None),
        (None, "pb-wrong"),
        ({"type": "auth", "api_key": "pb-a\nb"}, None),  # no key holds a line break
        (None, "pb-a%0Ab"),
    ],
)
async def test_refused_without_a_valid_key(
    ws_url: str, first: dict[str, Any] | str | None, url_key: str | None
) -> None:
    async with client(ws_url, url_key) as ws:
        if first is not None:
            await ws.send(first if isinstance(first, str) else json.dumps(first))
        answer = await recv(ws)
        assert answer["type"] == "failed" and "api_key" in answer["message"]
        assert await closed(ws) == (4401, "authentication required")


async def test_auth_must_come_in_time(stack: Stack) -> None:
    with serve_ws(stack.settings, auth_timeout_s=0.2) as url:
        async with client(url) as ws:
            assert "no API key in time" in (await recv(ws))["message"]
            assert (await closed(ws))[0] == 4401


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("{not json", {"message": "a frame is one JSON object; this one is not valid JSON"}),
        ("[1, 2]", {}),
        ({"type": "explode", "job_id": "01ABC"}, {"job_id": "01ABC"}),
        ({"type": "add", "query": "no id"}, {}),
        ({"type": "add", "id": "x"}, {"id": "x"}),
        ({"type": "listen"}, {}),
        ({"type": "listen", "job_id": "01ABC", "after": -1}, {"job_id": "01ABC"}),
        ({"type": "cancel"}, {}),
        ({"type": "listen", "job_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}, {}),
        ({"type": "cancel", "job_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}, {}),
        ({"type": "auth", "api_key": "again"}, {}),
    ],
)
async def test_bad_frames_are_answered_and_the_connection_stays_usable(
    stack: Stack, ws_url: str, frame: dict[str, Any] | str, expected: dict[str, Any]
) -> None:
    async with client(ws_url, stack.admin_key) as ws:
        await ws.send(frame if isinstance(frame, str) else json.dumps(frame))
        answer = await recv(ws)
        assert answer["type"] == "failed" and answer["message"], answer
        assert expected.items() <= answer.items()
        job_id = await add(ws)
        assert (await updates(ws, job_id))[-1]["type"] == "done"


async def test_what_a_failed_frame_repeats_of_a_bad_one_is_short(stack: Stack, ws_url: str) -> None:
    """A client that sends huge bad frames and reads nothing must not fill its queue with them."""
    async with client(ws_url, stack.admin_key) as ws:
        await send(ws, {"type": "x" * 100_000, "id": "y" * 100_000, "job_id": "z" * 100_000})
        answer = await recv(ws)
    assert answer["type"] == "failed" and "id" not in answer and "job_id" not in answer
    assert len(json.dumps(answer)) < 1000


async def test_missing_fields_are_named(stack: Stack, ws_url: str) -> None:
    async with client(ws_url, stack.admin_key) as ws:
        await send(ws, {"type": "add", "query": "q"})
        assert (await recv(ws))["message"] == "add: id: Field required"
        await send(ws, {"type": "listen"})
        assert (await recv(ws))["message"] == "listen: job_id: Field required"
        await ws.send(b"\x00binary")
        assert "binary" in (await recv(ws))["message"]


async def test_someone_elses_job_cannot_be_listened_to_or_cancelled(
    stack: Stack, ws_url: str
) -> None:
    async with client(ws_url, stack.admin_key) as ws:
        job_id = await add(ws)
        await updates(ws, job_id)
    async with client(ws_url, stack.new_user("mallory")) as ws:
        for kind in ("listen", "cancel"):
            await send(ws, {"type": kind, "job_id": job_id})
            answer = await recv(ws)
            assert answer["type"] == "failed" and answer["job_id"] == job_id
            assert answer["message"] == f"no job {job_id!r} of yours to {kind}" + (
                " to" if kind == "listen" else ""
            )


async def test_oversize_frame_closes_with_1009(stack: Stack, ws_url: str) -> None:
    async with client(ws_url, stack.admin_key) as ws:
        await ws.send("x" * (stack.settings.ws.max_frame_bytes + 1))
        code, reason = await closed(ws)
    assert code == 1009 and reason and "limit" in reason


async def test_slow_consumer_is_dropped_without_stalling_others(
    stack: Stack, upstream: MockUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    # More than the kernel buffers on loopback hold (4 MB), sent uncompressed to a client with a
    # small receive window that reads nothing, so its frames pile up in the channel. Not smaller
    # than 64 KB: below a segment's size on loopback, the window reopens once the client reads
    # only at the channel's zero-window probes, whose interval doubles while it stays shut, and
    # after a few seconds of a slow job the close frame would come too late.
    upstream.reply = " ".join(["x" * 16_000] * 300)
    with serve_ws(stack.settings, send_queue_limit=8, send_timeout_s=0.5) as url:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65_536)
        sock.connect(("127.0.0.1", int(url.split(":")[2].split("/")[0])))
        async with (
            client(
                url, stack.admin_key, sock=sock, max_queue=1, max_size=None, compression=None
            ) as slow,
            client(url, stack.admin_key, max_size=None) as fast,
        ):
            job_id = await add(slow)
            await send(fast, {"type": "listen", "job_id": job_id})
            frames = await updates(fast, job_id)  # while `slow` reads nothing
            assert frames[-1]["type"] == "done" and text(frames) == upstream.reply
            deadline = time.monotonic() + 10
            while not any("unread" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "the slow client was never dropped"
                await asyncio.sleep(0.05)
            got = await drain(slow)
    assert got < len(frames)
    assert (slow.close_code, slow.close_reason) == (1008, TOO_SLOW_REASON)


async def test_many_listeners_get_every_frame(
    stack: Stack, ws_url: str, upstream: MockUpstream
) -> None:
    upstream.mode, upstream.delay_s = "slow", 0.5

    async def listen(job_id: str) -> list[dict[str, Any]]:
        async with client(ws_url, stack.admin_key) as ws:
            await send(ws, {"type": "listen", "job_id": job_id})
            return await updates(ws, job_id)

    async with client(ws_url, stack.admin_key) as ws:
        job_id = await add(ws)
        listeners = [listen(job_id) for _ in range(200)]
        mine, *theirs = await asyncio.gather(updates(ws, job_id), *listeners)
    assert mine[-1]["type"] == "done" and text(mine) == upstream.reply
    assert all(frames == mine for frames in theirs)


async def test_unreachable_core_is_a_retryable_failure(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, core={"port": free_port()})  # nothing listens there
    with serve_ws(settings) as url:
        async with client(url, "pb-any") as ws:
            answer = await recv(ws)
            assert answer["type"] == "failed" and answer["retryable"] is True
            assert (await closed(ws))[0] == 1013
        async with httpx.AsyncClient() as http:
            health = await http.get(url.replace("ws://", "http://").replace("/ws/", "/healthz"))
        assert health.json()["status"] == "ok"


async def test_a_core_that_goes_away_is_a_retryable_failure(
    settings: Settings, upstream: MockUpstream
) -> None:
    assert settings.admin_key is not None
    with ExitStack() as core, serve_ws(settings) as url:
        core_url = core.enter_context(serve_in_thread(create_core(settings), settings.core.port))
        register_models(Stack(settings, core_url, "", ADMIN_KEY), upstream.base_url)
        async with client(url, ADMIN_KEY) as ws:
            job_id = await add(ws)
            await updates(ws, job_id)
            core.close()  # the core stops; the channel stays
            await send(ws, {"type": "add", "id": "later", "query": "q"})
            answer = await recv(ws)
            assert answer["type"] == "failed" and answer["id"] == "later"
            assert answer["retryable"] is True and "not answering" in answer["message"]
            await send(ws, {"type": "listen", "job_id": job_id})
            answer = await recv(ws)
            assert (answer["type"], answer["job_id"], answer["retryable"]) == (
                "failed",
                job_id,
                True,
            )


async def test_path_without_slash_and_heartbeat(stack: Stack, ws_url: str) -> None:
    async with client(ws_url.rstrip("/"), stack.admin_key) as ws:
        job_id = await add(ws)
        assert (await updates(ws, job_id))[-1]["type"] == "done"
    deadline = time.monotonic() + 10
    with stack.admin() as admin:
        while "ws" not in {m["name"] for m in admin.get("/v1/status").json()["modules"]}:
            assert time.monotonic() < deadline, "the ws channel never reported in"
            await asyncio.sleep(0.1)
