"""Behind a reverse proxy every request's peer is the proxy: the client is the address a trusted
proxy says it was asked by, and only a trusted proxy is believed."""

from __future__ import annotations

from ipaddress import ip_network

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from patchbay.api.peers import Network, client_host, forwarded_client

PROXIES: list[Network] = [ip_network("127.0.0.1"), ip_network("10.1.0.0/16")]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        # a peer that is no trusted proxy is the client, whatever it says
        ("192.0.2.7", ["198.51.100.1"], "192.0.2.7"),
        ("192.0.2.7", [], "192.0.2.7"),
        # a trusted proxy names the client
        ("127.0.0.1", ["192.0.2.7"], "192.0.2.7"),
        ("::ffff:127.0.0.1", ["192.0.2.7"], "192.0.2.7"),
        # the right-most address no trusted proxy added: those left of it are the client's words
        ("127.0.0.1", ["127.0.0.1, 192.0.2.7, 10.1.2.3"], "192.0.2.7"),
        ("127.0.0.1", ["127.0.0.1", "192.0.2.7", "10.1.2.3"], "192.0.2.7"),
        ("127.0.0.1", ["2001:db8::7 ,10.1.2.3"], "2001:db8::7"),
        # all of them proxies: the request began at the first
        ("127.0.0.1", ["10.1.9.9, 10.1.2.3"], "10.1.9.9"),
        # a proxy asked directly, by nobody else
        ("127.0.0.1", [], "127.0.0.1"),
        # no address where the client's should be: nobody's known host
        ("127.0.0.1", ["192.0.2.7, unknown"], None),
        ("127.0.0.1", ["192.0.2.7,"], None),
        ("127.0.0.1", ["localhost"], None),
        (None, ["192.0.2.7"], None),
    ],
)
def test_the_client_is_the_nearest_address_no_trusted_proxy_added(
    peer: str | None, forwarded_for: list[str], client: str | None
) -> None:
    assert forwarded_client(peer, forwarded_for, PROXIES) == client


def test_no_proxy_is_trusted_unless_configured() -> None:
    assert forwarded_client("127.0.0.1", ["192.0.2.7"], []) == "127.0.0.1"


async def test_a_request_is_read_with_all_its_forwarded_for_headers() -> None:
    async def whence(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(client_host(request, PROXIES)))

    transport = httpx.ASGITransport(
        app=Starlette(routes=[Route("/", whence)]), client=("127.0.0.1", 4321)
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://core") as client:
        headers = [("X-Forwarded-For", "198.51.100.1, 192.0.2.7"), ("X-Forwarded-For", "10.1.0.1")]
        assert (await client.get("/", headers=headers)).text == "192.0.2.7"
        assert (await client.get("/")).text == "127.0.0.1"
