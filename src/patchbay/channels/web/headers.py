"""Headers every answer of the web channel carries: a strict Content-Security-Policy and friends."""

from __future__ import annotations

from patchbay.asgi import ASGIApp, Message, Receive, Scope, Send

# No inline scripts or styles anywhere: the page's code and CSS are files served from here.
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"permissions-policy", b"microphone=(self), camera=(), geolocation=()"),
)


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to answers, and `Cache-Control`: `no-store` for the API's (a
    person's chats stay off the browser's disk after they sign out), `no-cache` for the rest
    where none is set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        private = scope["path"].startswith(("/api/", "/auth/"))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                cached = [(n, v) for n, v in headers if n.lower() == b"cache-control"]
                if private:
                    headers = [(n, v) for n, v in headers if (n, v) not in cached]
                    headers.append((b"cache-control", b"no-store"))
                elif not cached:
                    headers.append((b"cache-control", b"no-cache"))
                message["headers"] = headers + list(SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, with_headers)
