"""`Http1Client`: requests to one origin over reused keep-alive connections, each request's
head made safe to send (its target percent-encoded, header breaks refused)."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from urllib.parse import quote, urlsplit

from patchbay.http1.connection import (
    ConnectFailed,
    Connection,
    ConnectionBroken,
    Response,
)

IDLE_S = 4.0  # a connection idle for longer is not used again: its server may be closing it
CLOSE_WAIT_S = 1.0  # how long `close()` waits for the sockets it closes
IDEMPOTENT = frozenset({"GET", "OPTIONS", "PUT", "DELETE"})
# A request target's characters that go as they are (RFC 3986's for a path and a query, `%` for
# escapes already made); any other is percent-encoded as UTF-8 (`#` too: a name may hold one).
_TARGET_SAFE = "/?@!$&'()*+,;=%:-._~"
_PLAIN_TARGET = re.compile(r"[A-Za-z0-9/?@!$&'()*+,;=%:\-._~]*")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")  # a `%` that starts no escape: itself, as %25
_HEADER_BREAKS = re.compile(r"[\r\n\0]")  # what no header name or value may hold (RFC 9110 5.5)


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
        self._idle: deque[Connection] = deque()  # oldest first
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
    ) -> tuple[Connection, Response]:
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

    def _take_idle(self) -> Connection | None:
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

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _transport, connection = await loop.create_connection(
                    lambda: Connection(self.read_timeout_s),
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
