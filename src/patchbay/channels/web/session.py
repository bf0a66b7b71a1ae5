"""Signing in: the page trades an API key for an HttpOnly cookie, so no script ever reads the key.

The cookie is `SameSite=Strict` and every call must carry `X-Patchbay-Web: 1`, a header another
site's page cannot send without a CORS preflight this channel never grants.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from patchbay.client import CoreClient
from patchbay.errors import AuthenticationFailed, InvalidRequest, PermissionDenied

COOKIE = "patchbay_key"
CSRF_HEADER = "x-patchbay-web"
KEY_SHAPE = re.compile(r"[\x21-\x7e]{1,500}")  # printable ASCII, no spaces: cookie-safe


def require_page(request: Request) -> None:
    """Refuse calls that do not come from the page's own scripts."""
    if request.headers.get(CSRF_HEADER) != "1":
        raise PermissionDenied("calls must come from the web chat page (X-Patchbay-Web: 1)")


def key_of(request: Request) -> str:
    """The signed-in person's key, from the cookie."""
    key = request.cookies.get(COOKIE, "")
    if not KEY_SHAPE.fullmatch(key):
        raise AuthenticationFailed("sign in with your API key")
    return key


async def session(request: Request, core: CoreClient) -> Response:
    """GET: who is signed in (`user` null when nobody); POST `{"key"}`: sign in; DELETE: sign out."""
    require_page(request)
    if request.method == "DELETE":
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response
    if request.method == "POST":
        return await _sign_in(request, core)
    key = request.cookies.get(COOKIE, "")
    if not KEY_SHAPE.fullmatch(key):
        return JSONResponse({"user": None})
    try:
        user = await core.me(key=key)
    except AuthenticationFailed:
        response = JSONResponse({"user": None})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response
    return JSONResponse({"user": user.model_dump(mode="json")})


async def _sign_in(request: Request, core: CoreClient) -> Response:
    try:
        key = (await request.json())["key"].strip()
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidRequest('send {"key": "your API key"}') from exc
    if not KEY_SHAPE.fullmatch(key):
        raise AuthenticationFailed("that key was not accepted; check it and try again")
    try:
        user = await core.me(key=key)
    except AuthenticationFailed as exc:
        raise AuthenticationFailed("that key was not accepted; check it and try again") from exc
    response = JSONResponse({"user": user.model_dump(mode="json")})
    response.set_cookie(
        COOKIE,
        key,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_over_https(request),
    )
    return response


def _over_https(request: Request) -> bool:
    """Whether the page is an https one: TLS ends at a reverse proxy in front of the channel,
    which then sees plain HTTP, but the browser names the page it signs in from (`Origin`)."""
    origin = request.headers.get("origin", "")
    return request.url.scheme == "https" or origin.lower().startswith("https://")
