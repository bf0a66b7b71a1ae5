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


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("192.0.2.7", ["for=198.51.100.1"], "192.0.2.7"),
        ("127.0.0.1", ["for=192.0.2.7"], "192.0.2.7"),
        ("127.0.0.1", ['for=192.0.2.7;proto=https;by="[2001:db8::1]", for=10.1.2.3'], "192.0.2.7"),
        ("127.0.0.1", ["for=192.0.2.7", "FOR=10.1.2.3"], "192.0.2.7"),
        ("127.0.0.1", ['for="[2001:db8::1]:4711"'], "2001:db8::1"),
        ("127.0.0.1", ['for="192.0.2.7:4711"'], "192.0.2.7"),
        ("127.0.0.1", ["for=198.51.100.1,, for=192.0.2.7 ,"], "192.0.2.7"),  # empty elements
        # a proxy that tells only the scheme or host says nothing of the client
        ("127.0.0.1", ["proto=https;host=example.com"], "127.0.0.1"),
        # unknown and obfuscated clients, an element with no for=: nobody's known host
        ("127.0.0.1", ["for=192.0.2.7, for=unknown"], None),
        ("127.0.0.1", ['for="_hidden", for=10.1.2.3'], None),
        ("127.0.0.1", ["for=192.0.2.7, proto=https"], None),
        # not RFC 7239: unquoted IPv6 or port, brackets round IPv4, a quote never closed
        ("127.0.0.1", ["for=2001:db8::1"], None),
        ("127.0.0.1", ["for=192.0.2.7:4711"], None),
        ("127.0.0.1", ['for="[192.0.2.7]"'], None),
        ("127.0.0.1", ['for="192.0.2.7, for=10.1.2.3'], None),
    ],
)
def test_forwarded_names_the_client_as_x_forwarded_for_does(
    peer: str, forwarded: list[str], client: str | None
) -> None:
    assert forwarded_client(peer, [], PROXIES, forwarded=forwarded) == client


@pytest.mark.parametrize(
    ("forwarded_for", "forwarded", "client"),
    [
        (["192.0.2.7"], ["for=192.0.2.7"], "192.0.2.7"),
        (["198.51.100.1, 192.0.2.7"], ["for=192.0.2.7, for=10.1.2.3"], "192.0.2.7"),
        # a proxy that writes one passes on the other as the client wrote it: whom to believe
        # is not known
        (["192.0.2.7"], ["for=198.51.100.1"], None),
        (["192.0.2.7"], ["for=unknown"], None),
        (["192.0.2.7"], ["proto=https"], "192.0.2.7"),
    ],
)
def test_with_both_headers_the_client_is_the_one_both_name(
    forwarded_for: list[str], forwarded: list[str], client: str | None
) -> None:
    assert forwarded_client("127.0.0.1", forwarded_for, PROXIES, forwarded=forwarded) == client


def test_no_proxy_is_trusted_unless_configured() -> None:
    assert forwarded_client("127.0.0.1", ["192.0.2.7"], []) == "127.0.0.1"
    assert forwarded_client("127.0.0.1", [], [], forwarded=["for=192.0.2.7"]) == "127.0.0.1"


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
        headers = [("Forwarded", "for=198.51.100.1"), ("Forwarded", 'for="[2001:db8::7]:80"')]
        assert (await client.get("/", headers=headers)).text == "2001:db8::7"
