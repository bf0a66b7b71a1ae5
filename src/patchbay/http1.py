"""A lean HTTP/1.1 client for the two hops on every turn's path: a channel to the core, and the
core to an OpenAI-compatible upstream.

Measured here, aiohttp spent about 0.14 ms of CPU per request (building it, a task of its own to
write the body, the answer parsed in two steps), against about 0.04 ms for this client; a turn
crosses two such hops. It does what those hops need and nothing else:

- one origin per client (`http://` or `https://`), keep-alive connections kept and reused while
  idle for less than `IDLE_S` (servers commonly close them after 5 s), and an idempotent request
  tried again on a new connection when a reused one turns out closed before any answer came;
- request bodies as bytes, sent with their length in one write with the head;
- answers with a length, chunked, or read to the close, read whole or piece by piece; interim
  (1xx) answers skipped, trailers dropped, a head past `MAX_HEAD` refused;
- a connect timeout, and a read timeout between the pieces of an answer.

No redirects, cookies, proxies or compression (the aiohttp sessions it replaces used none), and no
HEAD requests (their answers' lengths describe a body that never comes).

Errors: `ConnectFailed` (nothing was sent), `ConnectionBroken` (the connection closed or failed
during the exchange), `ReadTimeout` (also a `TimeoutError`), `ProtocolError` (not an HTTP/1.1
answer); all are `Http1Error`s.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import cast
from urllib.parse import quote, urlsplit

import httptools

MAX_BUFFERED = 1024 * 1024  # unread bytes of an answer past which reading the socket pauses
MAX_HEAD = 64 * 1024  # bytes of header names and values (trailers' too) an answer may have
IDLE_S = 4.0  # a connection idle for longer is not used again: its server may be closing it
CLOSE_WAIT_S = 1.0  # how long `close()` waits for the sockets it closes
IDEMPOTENT = frozenset({"GET", "OPTIONS", "PUT", "DELETE"})
# A request target's characters that go as they are (RFC 3986's for a path and a query, `%` for
# escapes already made); any other is percent-encoded as UTF-8 (`#` too: a name may hold one).
_TARGET_SAFE = "/?@!$&'()*+,;=%:-._~"
_PLAIN_TARGET = re.compile(r"[A-Za-z0-9/?@!$&'()*+,;=%:\-._~]*")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")  # a `%` that starts no escape: itself, as %25
_HEADER_BREAKS = re.compile(r"[\r\n\0]")  # what no header name or value may hold (RFC 9110 5.5)
JOIN_BELOW = 64 * 1024  # a smaller body goes in one write with the head; a larger one, not copied


class Http1Error(Exception):
    """An HTTP exchange failed."""


class ConnectFailed(Http1Error):
    """No connection could be made; nothing was sent."""


class ConnectionBroken(Http1Error):
    """The connection closed or failed before the answer was complete."""


class ReadTimeout(Http1Error, TimeoutError):
    """The other side sent nothing for the read timeout."""


class ProtocolError(Http1Error):
    """What came back is not an HTTP/1.1 answer."""


class Response:
    """An answer: its status and headers (names in lower case) at once, its body as it comes.

    `headers` holds one value per name: a header sent on several lines has its values joined
    with ", ", as RFC 9110 (5.3) allows for the list-valued ones, except Set-Cookie, whose
    values may hold commas (its first value there); `header_values` has each line's value.
    """

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.status = 0
        self.headers: dict[str, str] = {}
        self._repeated: dict[str, list[str]] | None = None  # every value of names sent twice
        self._pieces: deque[bytes] = deque()
        self._buffered = 0
        self._head_done = False
        self._complete = False
        self._error: Http1Error | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.bytes_seen = False  # whether any byte of it arrived

    def header_values(self, name: str) -> list[str]:
        """Every value of the header `name` (in lower case), one per line it came on, in order."""
        if self._repeated is not None and name in self._repeated:
            return list(self._repeated[name])
        value = self.headers.get(name)
        return [] if value is None else [value]

    def _add_header(self, name: str, value: str) -> None:
        """A value of a header already there: kept, and joined to the first unless Set-Cookie."""
        repeated = self._repeated
        if repeated is None:
            repeated = self._repeated = {}
        values = repeated.setdefault(name, [self.headers[name]])
        values.append(value)
        if name != "set-cookie":
            self.headers[name] = ", ".join(values)

    async def read(self) -> bytes:
        """The whole body."""
        parts = [piece async for piece in self.chunks()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body in the pieces it arrives in."""
        while True:
            while self._pieces:
                piece = self._pieces.popleft()
                self._buffered -= len(piece)
                self._connection.consumed(self._buffered)
                yield piece
            if self._complete:
                return
            if self._error is not None:
                raise self._error
            await self._wait()

    async def _wait(self) -> None:
        """Until something happens (a piece, the head, the end, a failure) or the read timeout."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(self._connection.read_timeout_s, self._timed_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _timed_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            self._fail(ReadTimeout(f"nothing came for {self._connection.read_timeout_s:g} s"))
            self._connection.close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: Http1Error) -> None:
        if not self._complete and self._error is None:
            self._error = error
        self._wake()

    async def _head(self) -> None:
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait()

    @property
    def complete(self) -> bool:
        return self._complete


class _Connection(asyncio.Protocol):
    """One keep-alive connection and the answer being read on it (httptools' parser calls the
    `on_*` methods)."""

    def __init__(self, read_timeout_s: float) -> None:
        self.read_timeout_s = read_timeout_s
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since: float | None = None  # when it last went back to the pool
        self.lost: asyncio.Future[None] | None = None  # done once the socket is closed
        self._parser = httptools.HttpResponseParser(self)
        self._response: Response | None = None
        self._paused = False
        self._keep_alive = False
        self._interim = False  # reading a 1xx answer, which the final one follows
        self._head_bytes = 0

    @property
    def reused(self) -> bool:
        """Whether it carried an answer before the one being read."""
        return self.idle_since is not None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream's (uvloop's is no subclass)
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        response = self._response
        if response is None or response.complete:  # nothing asked: a server out of turn
            self.close()
            return
        response.bytes_seen = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            refused = exc.__context__  # what a callback raised, when one did
            if not isinstance(refused, ProtocolError):
                refused = ProtocolError(f"not an HTTP/1.1 answer: {exc}")
            response._fail(refused)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)
        response = self._response
        if response is None or response.complete:
            return
        if response._head_done and _reads_to_close(response.headers) and exc is None:
            response._complete = True  # an answer without a length ends with its connection
            response._wake()
            return
        reason = f": {exc}" if exc else ""
        response._fail(ConnectionBroken(f"the connection closed before the answer ended{reason}"))

    # httptools callbacks

    def _reading(self) -> Response:
        """The answer being read: the parser calls back only while there is one."""
        response = self._response
        assert response is not None  # noqa: S101 - see `data_received`
        return response

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD:
            raise ProtocolError(f"the answer's head is over {MAX_HEAD} bytes")
        response = self._reading()
        if response._head_done:
            return  # a trailer: not part of the head the caller has
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key in response.headers:
            response._add_header(key, text)
        else:
            response.headers[key] = text

    def on_headers_complete(self) -> None:
        response = self._reading()
        status = self._parser.get_status_code()
        if status == 101:
            raise ProtocolError("the server switched protocols, which no request asked for")
        if 100 <= status < 200:  # 100 Continue, 103 Early Hints: the final answer comes next
            self._interim = True
            response.headers, response._repeated = {}, None
            return
        response.status = status
        response._head_done = True
        response._wake()

    def on_body(self, body: bytes) -> None:
        response = self._reading()
        response._pieces.append(body)
        response._buffered += len(body)
        if response._buffered > MAX_BUFFERED and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        response._wake()

    def on_message_complete(self) -> None:
        if self._interim:  # the end of a 1xx answer (it has no body)
            self._interim = False
            return
        response = self._reading()
        self._keep_alive = self._parser.should_keep_alive()
        response._complete = True
        response._wake()

    # the client's side

    def send(self, head: bytes, body: bytes) -> Response:
        """Write a request; its answer is read into the returned `Response`."""
        assert self.transport is not None  # noqa: S101 - connected before use
        self._response = response = Response(self)
        self._keep_alive = False
        self._head_bytes = 0
        if self.closed or self.transport.is_closing():
            response._fail(ConnectionBroken("the connection closed before the request went"))
        elif len(body) < JOIN_BELOW:
            self.transport.write(head + body)
        else:
            self.transport.write(head)
            self.transport.write(body)
        return response

    def consumed(self, buffered: int) -> None:
        """The reader took pieces; reading the socket goes on once little is left unread."""
        if self._paused and buffered <= MAX_BUFFERED // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def reusable(self) -> bool:
        """Whether the answer was read to its end and the connection can carry another (not one
        whose reading paused for an answer left unread: the next answer would not be read)."""
        response = self._response
        return (
            not self.closed
            and not self._paused
            and response is not None
            and response.complete
            and self._keep_alive
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _reads_to_close(headers: Mapping[str, str]) -> bool:
    coding = headers.get("transfer-encoding", "").lower()  # codings' names ignore case
    return "content-length" not in headers and "chunked" not in coding


class Http1Client:
    """Requests to one origin (`base_url`'s scheme, host and port) over reused connections."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 600.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        default_port = 443 if url.scheme == "https" else 80
        self.host = url.hostname
        self.port = url.port or default_port
        self.prefix = url.path.rstrip("/")  # prepended to every request's path
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = host if self.port == default_port else f"{host}:{self.port}"
        self._ssl: ssl.SSLContext | None = None
        if url.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._idle: deque[_Connection] = deque()  # oldest first
        self._closed = False

    @asynccontextmanager
    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> AsyncIterator[Response]:
        """Send a request (`path` after the base URL's own) and hold its answer, whose head has
        come; the body is read inside the block. Leaving the block early closes the connection."""
        head = self._head(method, self.prefix + path, headers or {}, body)
        connection, response = await self._exchange(head, body or b"", retry=method in IDEMPOTENT)
        try:
            yield response
        finally:
            if connection.reusable() and not self._closed:
                connection.idle_since = asyncio.get_running_loop().time()
                self._idle.append(connection)
            else:
                connection.close()

    async def _exchange(
        self, head: bytes, body: bytes, *, retry: bool
    ) -> tuple[_Connection, Response]:
        """Send on an idle connection, or a new one. With `retry`, a reused connection that
        closed before any answer came (its server let it go while idle) is left for a new one."""
        while True:
            connection = self._take_idle() or await self._connect()
            response = connection.send(head, body)
            try:
                await response._head()
            except ConnectionBroken:
                connection.close()
                if retry and connection.reused and not response.bytes_seen:
                    continue
                raise
            except BaseException:  # a failure, or the caller cancelled: nothing else will use it
                connection.close()
                raise
            return connection, response

    def _take_idle(self) -> _Connection | None:
        """The connection idle for the shortest time, if it is fresh; those idle too long (left
        below the ones in use under a steady load, after a burst) are closed on the way."""
        fresh_since = asyncio.get_running_loop().time() - IDLE_S
        idle = self._idle
        while idle and (idle[0].closed or (idle[0].idle_since or 0.0) < fresh_since):
            idle.popleft().close()
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _transport, connection = await loop.create_connection(
                    lambda: _Connection(self.read_timeout_s),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                )
        except TimeoutError as exc:
            raise ConnectFailed(
                f"no connection to {self._host_header} within {self.connect_timeout_s:g} s"
            ) from exc
        except OSError as exc:  # refused, unreachable, no such host, TLS failures
            raise ConnectFailed(f"cannot connect to {self._host_header}: {exc}") from exc
        return connection

    def _head(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None
    ) -> bytes:
        if "%" in target:
            target = _LONE_PERCENT.sub("%25", target)
        if not _PLAIN_TARGET.fullmatch(target):  # a name in the path, with spaces or accents
            target = quote(target, safe=_TARGET_SAFE)
        lines = [f"{method} {target or '/'} HTTP/1.1", f"Host: {self._host_header}"]
        for name, value in headers.items():
            if _HEADER_BREAKS.search(value) or _HEADER_BREAKS.search(name):
                raise ValueError(f"the header {name!r} holds a line break or a NUL")
            lines.append(f"{name}: {value}")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def close(self) -> None:
        """Close the idle connections, and return once their sockets are; those in use close
        when their answer is done."""
        self._closed = True
        closing = []
        while self._idle:
            connection = self._idle.pop()
            connection.close()
            if connection.lost is not None:
                closing.append(connection.lost)
        if closing:  # the loop closes a socket a turn after `transport.close()`
            await asyncio.wait(closing, timeout=CLOSE_WAIT_S)
