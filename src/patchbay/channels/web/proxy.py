"""The page's API: `/api/…` passes to the core's `/v1/…` with the signed-in person's key.

Only the routes the page uses pass; answers, event streams included, come back as they arrive.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator

import aiohttp
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from yarl import URL

from patchbay.errors import CoreUnavailable, NotFound
from patchbay.http1 import IDLE_S

_ID = r"[A-Za-z0-9_-]{1,64}"
ROUTES: tuple[tuple[frozenset[str], re.Pattern[str]], ...] = tuple(
    (frozenset(methods.split()), re.compile(path))
    for methods, path in (
        ("GET", "me|models|assistants|chats"),
        ("GET PATCH DELETE", f"chats/{_ID}"),
        ("GET", f"chats/{_ID}/messages"),
        ("POST", "turns|turns/upload"),
        ("POST", f"messages/{_ID}/regenerate"),
        ("GET DELETE", f"jobs/{_ID}"),
        ("GET", f"jobs/{_ID}/events"),
        ("GET", "deliveries/turn"),  # the turn that took a message the page sent, if one did
    )
)
REQUEST_HEADERS = ("accept", "content-type", "last-event-id")
ANSWER_HEADERS = frozenset({"content-type", "cache-control", "retry-after", "x-accel-buffering"})


def allowed(method: str, path: str) -> bool:
    """Whether the page may make this call (the rest of the core's API stays out of reach)."""
    return any(method in methods and pattern.fullmatch(path) for methods, pattern in ROUTES)


class CoreProxy:
    """One `aiohttp` session to the core for every signed-in person of this process."""

    def __init__(self, base_url: str, *, read_timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_read=read_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Idle connections go before the core's server lets them go (after 5 s): a POST sent
            # on one it is closing fails, and is not sent again.
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=IDLE_S)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def forward(
        self, request: Request, *, path: str, key: str, body: AsyncIterable[bytes] | None = None
    ) -> Response:
        """Pass the call on, its body (POST, PATCH: `body`, or the request's) as it comes, and the
        answer back; event streams unbuffered."""
        if not allowed(request.method, path):
            raise NotFound(f"/api/{path} is not part of the web chat's API")
        headers = {name: value for name in REQUEST_HEADERS if (value := request.headers.get(name))}
        headers["Authorization"] = f"Bearer {key}"
        sent = _Body(body or request.stream()) if request.method in ("POST", "PATCH") else None
        if sent is not None and (length := request.headers.get("content-length", "")).isdigit():
            headers["Content-Length"] = length  # else it goes chunked
        query = f"?{request.url.query}" if request.url.query else ""
        url = URL(f"{self.base_url}/v1/{path}{query}", encoded=True)
        try:
            upstream = await self._http().request(request.method, url, data=sent, headers=headers)
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            if sent is not None and sent.stopped is not None:
                raise sent.stopped from None
            raise CoreUnavailable("the core is not answering; try again shortly") from exc
        answer = {  # a header on several lines: one, its values joined (RFC 9110 5.3)
            name: ", ".join(upstream.headers.getall(name))
            for name in upstream.headers
            if name.lower() in ANSWER_HEADERS or name.lower().startswith("x-patchbay-")
        }
        if upstream.content_type == "text/event-stream":
            return StreamingResponse(_relay(upstream), status_code=upstream.status, headers=answer)
        try:
            content = await upstream.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise CoreUnavailable("the core broke off its answer; try again") from exc
        finally:
            upstream.release()
        return Response(content, status_code=upstream.status, headers=answer)


class _Body:
    """A request's body passed on as it comes. What stops it on the way (the page gone, a body
    past the size limit, a turn refused) breaks the request to the core off, so the core never
    gets it whole, and is kept to be answered in place of the broken connection."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks
        self.stopped: Exception | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks:
                yield chunk
        except Exception as exc:  # whatever it is, `forward` raises it again
            self.stopped = exc
            raise


async def _relay(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The stream's bytes as they come; a broken stream just ends (the page resumes it)."""
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    except (TimeoutError, aiohttp.ClientError):
        return
    finally:
        upstream.close()
