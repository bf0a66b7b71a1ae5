"""The lean HTTP/1.1 client against raw servers on loopback that answer exactly as each test says:
kept connections, lengths, chunks, answers read to the close, servers that hang up, stay silent
or send garbage, large bodies both ways, and TLS."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509

from patchbay import http1
from patchbay.http1 import (
    ConnectFailed,
    ConnectionBroken,
    Http1Client,
    ProtocolError,
    ReadTimeout,
)
from tests.support.certificates import issue

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class Server:
    """A raw server: `handler` gets each connection with its number (0, 1, …)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number, self.connections = self.connections, self.connections + 1
        try:
            await self.handler(reader, writer, number)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went, or the test ended
        finally:
            writer.close()


@asynccontextmanager
async def serving(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[Server, str]]:
    server = Server(handler)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"{'https' if tls else 'http'}://127.0.0.1:{port}/v1"
    finally:
        listener.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """One request: its request line, headers (lower-case names) and body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    line, *fields = head.split("\r\n")[:-2]
    headers = {k.lower(): v for k, _, v in (f.partition(": ") for f in fields)}
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return line, headers, body


def answer(body: bytes, *extra: str) -> bytes:
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


PARTLY_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"


def replies(raw: bytes, *, hang_up: bool) -> Handler:
    """A server that answers one request with `raw`, then hangs up or waits for the client to."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()
        if not hang_up:
            await reader.read()

    return handler


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
    """Answers every request on the connection with its request line and body."""
    while True:
        line, _headers, body = await read_request(reader)
        writer.write(answer(line.encode() + b"|" + body))
        await writer.drain()


async def test_one_connection_carries_one_request_after_another() -> None:
    async with serving(echo) as (server, url):
        client = Http1Client(url)
        for n in range(3):
            async with client.request("POST", "/chat", body=b"n%d" % n) as response:
                assert response.status == 200
                assert await response.read() == b"POST /v1/chat HTTP/1.1|n%d" % n
        await client.close()
    assert server.connections == 1


async def test_closing_the_client_closes_its_kept_sockets_before_it_returns() -> None:
    """A caller may close its event loop right after `close()` (a thread's `asyncio.run`): a
    socket still closing then would be left open, and reported unclosed."""
    async with serving(echo) as (_server, url):
        client = Http1Client(url)
        async with client.request("GET", "/a") as response:
            await response.read()
        kept = [connection.transport for connection in client._idle]
        assert len(kept) == 1 and kept[0] is not None
        await client.close()
        assert kept[0].get_extra_info("socket").fileno() == -1


async def test_the_request_carries_its_host_length_and_headers() -> None:
    seen: list[dict[str, str]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        _line, headers, _body = await read_request(reader)
        seen.append(headers)
        writer.write(answer(b""))

    async with serving(handler) as (_server, url):
        client = Http1Client(url)
        async with client.request("POST", "/x", headers={"Authorization": "Bearer k"}, body=b"12"):
            pass
        await client.close()
    port = url.split(":")[2].split("/")[0]
    assert seen == [
        {"host": f"127.0.0.1:{port}", "authorization": "Bearer k", "content-length": "2"}
    ]


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("/assistants/my bot#1 café?limit=5", "/v1/assistants/my%20bot%231%20caf%C3%A9?limit=5"),
        ("/assistants/50% off%2F", "/v1/assistants/50%25%20off%2F"),  # a lone % escaped too
    ],
)
async def test_names_in_the_path_are_percent_encoded(path: str, sent: str) -> None:
    async with serving(echo) as (_server, url):
        client = Http1Client(url)
        async with client.request("GET", path) as response:
            line = (await response.read()).split(b"|")[0]
        await client.close()
    assert line == f"GET {sent} HTTP/1.1".encode()


async def test_a_chunked_answer_comes_piece_by_piece() -> None:
    last = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Id: 7\r\n\r\n")
        writer.write(b"5\r\nfirst\r\n")
        await writer.drain()
        await last.wait()  # the client has the first piece before the server sends the rest
        writer.write(b"4\r\nlast\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with serving(handler) as (_server, url):
        client = Http1Client(url)
        async with client.request("GET", "/events") as response:
            assert response.headers["x-id"] == "7"
            pieces = []
            async for piece in response.chunks():
                pieces.append(piece)
                last.set()
        assert pieces == [b"first", b"last"]
        await client.close()


async def test_an_answer_without_a_length_ends_with_its_connection() -> None:
    to_the_close = b"HTTP/1.1 200 OK\r\n\r\nall of it"
    async with serving(replies(to_the_close, hang_up=True)) as (server, url):
        client = Http1Client(url)
        for _ in range(2):
            async with client.request("GET", "/") as response:
                assert await response.read() == b"all of it"
        await client.close()
    assert server.connections == 2  # such a connection is not used again


async def hangs_up_on_the_second(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
) -> None:
    """Connection 0 answers one request, then closes on the next without an answer (as a server
    letting an idle connection go just as a request comes); later connections echo."""
    if n > 0:
        await echo(reader, writer, n)
        return
    line, _headers, body = await read_request(reader)
    writer.write(answer(line.encode() + b"|" + body))
    await writer.drain()
    await read_request(reader)


async def test_an_idempotent_request_goes_again_on_a_new_connection() -> None:
    async with serving(hangs_up_on_the_second) as (server, url):
        client = Http1Client(url)
        for _ in range(2):
            async with client.request("GET", "/again") as response:
                assert await response.read() == b"GET /v1/again HTTP/1.1|"
        await client.close()
    assert server.connections == 2


async def test_a_post_is_not_sent_twice() -> None:
    async with serving(hangs_up_on_the_second) as (server, url):
        client = Http1Client(url)
        async with client.request("POST", "/turns", body=b"{}") as response:
            await response.read()
        with pytest.raises(ConnectionBroken):
            async with client.request("POST", "/turns", body=b"{}"):
                pass
        await client.close()
    assert server.connections == 1


async def test_a_connection_idle_too_long_is_not_used_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http1.client, "IDLE_S", 0.0)
    async with serving(echo) as (server, url):
        client = Http1Client(url)
        for _ in range(2):
            async with client.request("GET", "/") as response:
                await response.read()
            await asyncio.sleep(0.01)
        await client.close()
    assert server.connections == 2


async def test_connections_idle_too_long_are_closed_under_steady_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a burst, one request at a time uses the newest connection; the older ones, idle
    since the burst, are closed, not kept for ever."""
    monkeypatch.setattr(http1.client, "IDLE_S", 0.2)
    open_now: set[int] = set()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        open_now.add(n)
        try:
            await asyncio.sleep(0.05)  # the burst's requests overlap: a connection each
            await echo(reader, writer, n)
        finally:
            open_now.discard(n)

    async def get() -> None:
        async with client.request("GET", "/") as response:
            await response.read()

    async with serving(handler) as (server, url):
        client = Http1Client(url)
        await asyncio.gather(*(get() for _ in range(5)))
        assert server.connections == 5
        await asyncio.sleep(0.1)
        for _ in range(3):  # past IDLE_S since the burst, one at a time
            await get()
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.05)  # the server sees the closes
        assert len(open_now) == 1
        await client.close()


async def test_no_server_fails_to_connect(tmp_path: Path) -> None:
    async with serving(echo) as (_server, url):
        pass  # the port is free again
    client = Http1Client(url)
    with pytest.raises(ConnectFailed):
        async with client.request("GET", "/"):
            pass


async def test_a_silent_server_times_out() -> None:
    async with serving(replies(b"", hang_up=False)) as (_server, url):  # never answers
        client = Http1Client(url, read_timeout_s=0.2)
        with pytest.raises(ReadTimeout) as caught:
            async with client.request("GET", "/"):
                pass
        assert isinstance(caught.value, TimeoutError)
        await client.close()


async def test_a_server_silent_mid_answer_times_out() -> None:
    async with serving(replies(PARTLY_CHUNKED, hang_up=False)) as (_server, url):
        client = Http1Client(url, read_timeout_s=0.2)
        async with client.request("GET", "/") as response:
            with pytest.raises(ReadTimeout):
                await response.read()
        await client.close()


async def test_a_request_cancelled_while_it_waits_closes_its_connection() -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        await reader.read()  # never answers; returns once the client closes
        closed.set()

    async def ask(client: Http1Client) -> None:
        async with client.request("GET", "/"):
            pass

    async with serving(handler) as (_server, url):
        client = Http1Client(url)
        asking = asyncio.create_task(ask(client))
        await asyncio.sleep(0.1)
        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking
        await asyncio.wait_for(closed.wait(), 5)
        await client.close()


async def test_garbage_is_a_protocol_error() -> None:
    async with serving(replies(b"SMTP ready, not HTTP\r\n\r\n", hang_up=False)) as (_server, url):
        client = Http1Client(url)
        with pytest.raises(ProtocolError):
            async with client.request("GET", "/"):
                pass
        await client.close()


@pytest.mark.parametrize(
    "cut_short",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nten bytes.",
        PARTLY_CHUNKED,
        PARTLY_CHUNKED.replace(b"chunked", b"Chunked"),  # codings' names ignore case
    ],
    ids=["length", "chunked", "Chunked"],
)
async def test_an_answer_cut_short_is_broken_off(cut_short: bytes) -> None:
    async with serving(replies(cut_short, hang_up=True)) as (_server, url):
        client = Http1Client(url)
        async with client.request("GET", "/") as response:
            with pytest.raises(ConnectionBroken):
                await response.read()
        await client.close()


@pytest.mark.parametrize(
    "interim",
    [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"],
    ids=["100", "103"],
)
async def test_interim_answers_are_skipped_for_the_final_one(interim: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        final = answer(b"hello", "X-Final: yes")
        head, _, body = final.partition(b"\r\n\r\n")
        writer.write(interim + head + b"\r\n\r\n")  # the final head with the interim one
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(body)
        await echo(reader, writer, n)

    async with serving(handler) as (server, url):
        client = Http1Client(url, read_timeout_s=2)
        async with client.request("POST", "/a", body=b"{}") as response:
            assert (response.status, response.headers.get("x-final")) == (200, "yes")
            assert "link" not in response.headers
            assert await response.read() == b"hello"
        async with client.request("GET", "/b") as response:  # on the same connection
            assert await response.read() == b"GET /v1/b HTTP/1.1|"
        await client.close()
    assert server.connections == 1


async def test_trailers_stay_out_of_the_head() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
        b"\r\n3\r\nabc\r\n0\r\nX-Checksum: 123\r\nContent-Type: text/html\r\n\r\n"
    )
    async with serving(replies(raw, hang_up=False)) as (_server, url):
        client = Http1Client(url)
        async with client.request("GET", "/") as response:
            assert await response.read() == b"abc"
            assert response.headers == {
                "content-type": "text/event-stream",
                "transfer-encoding": "chunked",
            }
        await client.close()


async def test_a_header_on_several_lines_keeps_each_value() -> None:
    """Set-Cookie values may hold commas, so joined they could not be told apart again; a
    list-valued header (RFC 9110 5.3) reads as one value, its lines joined."""
    raw = answer(
        b"ok",
        "Set-Cookie: a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT",
        "Cache-Control: no-store",
        "Set-Cookie: b=2",
        "Cache-Control: private",
    )
    async with serving(replies(raw, hang_up=False)) as (_server, url):
        client = Http1Client(url)
        async with client.request("GET", "/") as response:
            assert response.header_values("set-cookie") == [
                "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT",
                "b=2",
            ]
            assert response.headers["set-cookie"] == "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT"
            assert response.headers["cache-control"] == "no-store, private"
            assert response.header_values("cache-control") == ["no-store", "private"]
            assert response.header_values("content-length") == ["2"]
            assert response.header_values("x-absent") == []
            assert await response.read() == b"ok"
        await client.close()


async def test_a_head_too_large_is_a_protocol_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1.connection, "MAX_HEAD", 1000)
    padding = [f"X-Pad-{n}: {'a' * 90}" for n in range(20)]
    async with serving(replies(answer(b"", *padding), hang_up=False)) as (_server, url):
        client = Http1Client(url)
        with pytest.raises(ProtocolError, match="over 1000 bytes"):
            async with client.request("GET", "/"):
                pass
        await client.close()


async def test_a_switch_of_protocols_nobody_asked_for_is_a_protocol_error() -> None:
    raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    async with serving(replies(raw, hang_up=False)) as (_server, url):
        client = Http1Client(url)
        with pytest.raises(ProtocolError, match="switched protocols"):
            async with client.request("GET", "/"):
                pass
        await client.close()


@pytest.mark.parametrize("value", ["k\r\nX-Admin: yes", "k\nX-Admin: yes", "1\x002"])
async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(value: str) -> None:
    async with serving(echo) as (server, url):
        client = Http1Client(url)
        with pytest.raises(ValueError, match="line break or a NUL"):
            async with client.request("GET", "/", headers={"X-Key": value}):
                pass
        await client.close()
    assert server.connections == 0


async def test_large_bodies_go_and_come_whole() -> None:
    big = bytes(range(256)) * (3 * 1024 * 4)  # 3 MiB: reading pauses and resumes on the way

    async with serving(echo) as (_server, url):
        client = Http1Client(url)
        async with client.request("PUT", "/big", body=big) as response:
            assert await response.read() == b"PUT /v1/big HTTP/1.1|" + big
        await client.close()


async def test_an_answer_left_unread_past_the_buffer_does_not_stall_the_next() -> None:
    """Its last bytes pause reading the socket as they end it; the caller leaves without reading
    it. The connection is not kept: the next request's answer would never be read on it."""
    first = http1.connection.MAX_BUFFERED - 10

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n > 0:
            await echo(reader, writer, n)
            return
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (first + 100))
        writer.write(b"x" * first)
        await writer.drain()
        await asyncio.sleep(0.1)  # read and buffered: under the limit
        writer.write(b"y" * 100)  # over it, and the end
        await echo(reader, writer, n)

    async with serving(handler) as (server, url):
        client = Http1Client(url, read_timeout_s=2)
        async with client.request("GET", "/big") as response:
            await asyncio.sleep(0.3)  # all of it came; the caller wanted only the status
            assert response.complete
        async with client.request("GET", "/small") as response:
            assert await response.read() == b"GET /v1/small HTTP/1.1|"
        await client.close()
    assert server.connections == 2


async def test_leaving_an_answer_before_its_end_closes_its_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        # the first connection's answer never ends; later ones echo
        await (echo if n > 0 else replies(PARTLY_CHUNKED, hang_up=False))(reader, writer, n)

    async with serving(handler) as (server, url):
        client = Http1Client(url)
        async with client.request("GET", "/events") as response:
            async for _piece in response.chunks():
                break  # the caller has seen enough
        async with client.request("GET", "/") as response:
            assert await response.read() == b"GET /v1/ HTTP/1.1|"
        await client.close()
    assert server.connections == 2


async def test_https_verifies_the_server(tmp_path: Path) -> None:
    issued = issue("127.0.0.1", x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    (tmp_path / "ca.pem").write_bytes(issued.ca)
    (tmp_path / "cert.pem").write_bytes(issued.certificate)
    (tmp_path / "key.pem").write_bytes(issued.key)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    async with serving(echo, tls=server_tls) as (_server, url):
        trusting = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        client = Http1Client(url, ssl_context=trusting)
        async with client.request("POST", "/secure", body=b"s") as response:
            assert await response.read() == b"POST /v1/secure HTTP/1.1|s"
        await client.close()
        stranger = Http1Client(url)  # the system's trust store does not know this CA
        with pytest.raises(ConnectFailed):
            async with stranger.request("GET", "/"):
                pass
