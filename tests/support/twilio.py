"""Twilio for the SMS and voice channels' tests: a stand-in for its REST API, webhooks signed as
Twilio signs them, and a channel served against a running stack."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from patchbay.channels.runner import create_app
from patchbay.plugins.manager import build_plugin_manager, channel_classes
from tests.conftest import free_port
from tests.support.servers import serve_in_thread
from tests.support.stack import Stack

ACCOUNT_SID = "AC00000000000000000000000000000001"
AUTH_TOKEN = "twilio-auth-token-for-tests"
WEBHOOK_KEY = "gateway-shared-key"


@dataclass
class TwilioStandIn:
    """Twilio's REST API as far as the channels use it: sending messages, serving media."""

    messages: list[dict[str, str]] = field(default_factory=list)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    url: str = ""

    def app(self) -> Starlette:
        async def send(request: Request) -> Response:
            expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
            sid = request.path_params["sid"]
            if sid != ACCOUNT_SID or request.headers.get("authorization") != f"Basic {expected}":
                error = {"code": 20003, "message": "Authenticate", "status": 401}
                return JSONResponse(error, status_code=401)
            form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
            self.messages.append(form)
            message_sid = f"SM{len(self.messages):032d}"
            body = {"sid": message_sid, "status": "queued", "to": form["To"], "body": form["Body"]}
            return JSONResponse(body, status_code=201)

        async def media(request: Request) -> Response:
            data, kind = self.media[request.path_params["name"]]
            return Response(data, media_type=kind)

        return Starlette(
            routes=[
                Route("/2010-04-01/Accounts/{sid}/Messages.json", send, methods=["POST"]),
                Route("/media/{name}", media),
            ]
        )


@contextmanager
def running_twilio() -> Iterator[TwilioStandIn]:
    stand_in = TwilioStandIn()
    with serve_in_thread(stand_in.app(), free_port()) as url:
        stand_in.url = url
        yield stand_in


@contextmanager
def serving(
    stack: Stack, twilio: TwilioStandIn, channel: str, **overrides: object
) -> Iterator[str]:
    """Serve the built-in Twilio channel `channel` ("sms" or "voice") with an open policy and
    the stand-in's credentials; yields its base URL."""
    port = free_port()
    own: dict[str, object] = {
        "port": port,
        "policy": "open",
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "api_base_url": twilio.url,
        "webhook_secret": WEBHOOK_KEY,
        **overrides,
    }
    settings = stack.settings.model_copy(update={"channels": {channel: own}})
    found = channel_classes(build_plugin_manager(entry_points=False))[channel]
    with serve_in_thread(create_app(settings, found), port) as url:
        yield url


def signed_post(
    url: str, params: dict[str, str], *, signed_url: str | None = None
) -> httpx.Response:
    """POST `params` as Twilio does, signed with the account's auth token over the URL called."""
    signature = RequestValidator(AUTH_TOKEN).compute_signature(signed_url or url, params)
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=30)


def parse(response: httpx.Response) -> ET.Element:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    return ET.fromstring(response.text)  # noqa: S314 - the TwiML our own channel wrote
