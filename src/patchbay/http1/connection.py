"""One connection of `Http1Client`: a request written, its answer parsed as it comes into a
`Response` read whole or piece by piece; and the errors of an exchange."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import cast

import httptools

MAX_BUFFERED = 1024 * 1024  # unread bytes of an answer past which reading the socket pauses
MAX_HEAD = 64 * 1024  # bytes of header names and values (trailers' too) an answer may have
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

    def __init__(self, connection: Connection) -> None:
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


class Connection(asyncio.Protocol):
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
