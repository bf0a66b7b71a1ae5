"""Where a request comes from: its peer, or, when that is a reverse proxy the core trusts, the
address the proxies were asked by (X-Forwarded-For, or Forwarded of RFC 7239). A helper's name
belongs to that host."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from starlette.requests import Request

Network = IPv4Network | IPv6Network

_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# One forwarded-pair (or none: RFC 9110 lets a list hold empty elements) and what ends it.
_PAIR = re.compile(rf'[ \t]*(?:({_TCHARS})=({_TCHARS}|"(?:[^"\\]|\\.)*"))?[ \t]*([;,]|\Z)')


def client_host(request: Request, trusted: Sequence[Network]) -> str | None:
    """The address `request` comes from, proxies in `trusted` seen through."""
    peer = request.client.host if request.client else None
    headers = request.headers
    return forwarded_client(
        peer, headers.getlist("x-forwarded-for"), trusted, forwarded=headers.getlist("forwarded")
    )


def forwarded_client(
    peer: str | None,
    forwarded_for: Sequence[str],
    trusted: Sequence[Network],
    *,
    forwarded: Sequence[str] = (),
) -> str | None:
    """`peer`, unless it is a trusted proxy: then the right-most address of X-Forwarded-For (its
    headers' values in order) that is not one, each proxy having added who asked it; the left-most
    if all are. Addresses left of that one are whatever the client wrote. Forwarded (RFC 7239) is
    read the same way, by the `for=` of each of its elements.

    With both, each must name the same client: a proxy that writes one passes the other on as the
    client wrote it, so trusting either alone would let a client behind a proxy of the other kind
    be whom it says. None when they differ, or when the hop that counts is no IP address
    (`unknown`, an obfuscated `_name`, no `for=`): the client is not known, so no host's."""
    address = _parsed(peer)
    if address is None or not _trusted(address, trusted):
        return peer
    chains = [hops for hops in (_for_hops(forwarded_for), _forwarded_hops(forwarded)) if hops]
    clients = {_nearest_untrusted(hops, trusted) for hops in chains}
    if not clients:  # a proxy asked directly, by nobody else
        return peer
    return clients.pop() if len(clients) == 1 else None


def _for_hops(forwarded_for: Sequence[str]) -> list[str]:
    return [hop.strip() for value in forwarded_for for hop in value.split(",")]


def _forwarded_hops(forwarded: Sequence[str]) -> list[str]:
    """The host of each element's `for=` in Forwarded headers, in order; "" for an element that
    names none, or for the whole if it is not Forwarded's syntax. No hops if no element has a
    `for=` (a proxy telling only proto or host), as if there were no header."""
    text = ",".join(forwarded)
    elements: list[dict[str, str]] = [{}]
    at = 0
    while at < len(text):
        pair = _PAIR.match(text, at)
        if pair is None:
            return [""]
        name, value, end = pair.groups()
        if name is not None:
            elements[-1].setdefault(name.lower(), value)
        if end == ",":
            elements.append({})
        at = pair.end()
    if not any("for" in element for element in elements):
        return []
    return [_node_host(element.get("for", "")) for element in elements if element]


def _node_host(node: str) -> str:
    """The address of a Forwarded node (`192.0.2.7:4711`, `"[2001:db8::1]:4711"`), or the node
    as it is when it names none (`unknown`, `_hidden`)."""
    node = node[1:-1] if node.startswith('"') else node
    if node.startswith("["):  # only an IPv6 address is written in brackets
        host, closed, _ = node[1:].partition("]")
        return host if closed and ":" in host else ""
    return node.partition(":")[0]


def _nearest_untrusted(hops: list[str], trusted: Sequence[Network]) -> str | None:
    """The right-most of `hops` that is not a trusted proxy, the left-most if all are; None if
    one on the way is no address."""
    for hop in reversed(hops):
        address = _parsed(hop)
        if address is None:
            return None
        if not _trusted(address, trusted):
            break
    return str(address)


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
