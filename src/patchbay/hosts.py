"""How an IPv4 address may be spelled: resolvers and browsers read `127.1`, `0x7f.1` and
`2130706433` as 127.0.0.1, where `ipaddress` reads them as no address, and so as a name."""

from __future__ import annotations

import re
import socket

# inet_aton's digits and dots only: glibc's also takes anything after a space ("127.0.0.1 x").
_INET_ATON = re.compile(r"[0-9a-fA-FxX.]+")


def odd_ipv4(host: str) -> str | None:
    """The IPv4 address `host` spells in a way other than a.b.c.d in decimal (`127.1`, `0x7f.1`,
    `2130706433`, `017.0.0.1` in octal), written a.b.c.d; None if it is no such spelling."""
    host = host.removesuffix(".")
    if not _INET_ATON.fullmatch(host):
        return None
    try:
        canonical = socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None
    return None if canonical == host else canonical
