"""Where a request comes from: its peer, or, when that is a reverse proxy the core trusts, the
address the proxies were asked by (X-Forwarded-For). A helper's name belongs to that host."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from starlette.requests import Request

Network = IPv4Network | IPv6Network


def client_host(request: Request, trusted: Sequence[Network]) -> str | None:
    """The address `request` comes from, proxies in `trusted` seen through."""
    peer = request.client.host if request.client else None
    return forwarded_client(peer, request.headers.getlist("x-forwarded-for"), trusted)


def forwarded_client(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> str | None:
    """`peer`, unless it is a trusted proxy: then the right-most address of X-Forwarded-For (its
    headers' values in order) that is not one, each proxy having added who asked it; the left-most
    if all are. Addresses left of that one are whatever the client wrote. None when the hop that
    counts is no IP address: the client is not known, so no host's."""
    address = _parsed(peer)
    if address is None or not _trusted(address, trusted):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        address = _parsed(hop)
        if address is None:
            return None
        if not _trusted(address, trusted):
            break
    return peer if not hops else str(address)


def _parsed(host: str | None) -> IPv4Address | IPv6Address | None:
    """`host` as an address, an IPv4 one as itself when seen as ::ffff:a.b.c.d; None if none."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPv4Address | IPv6Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)
