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

from patchbay.http1.client import IDLE_S, Http1Client
from patchbay.http1.connection import (
    ConnectFailed,
    ConnectionBroken,
    Http1Error,
    ProtocolError,
    ReadTimeout,
    Response,
)

__all__ = [
    "IDLE_S",
    "ConnectFailed",
    "ConnectionBroken",
    "Http1Client",
    "Http1Error",
    "ProtocolError",
    "ReadTimeout",
    "Response",
]
