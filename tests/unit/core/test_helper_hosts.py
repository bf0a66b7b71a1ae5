"""A helper's name belongs to its host, by the rules that check its base URL: an address in any
spelling is one host, and a helper at a host an admin allowed keeps its name wherever it calls
from (its address there is not known)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from pydantic import ValidationError

from patchbay.config import HelperSettings
from patchbay.core import mcp
from patchbay.core.helper_rules import host_key
from patchbay.core.helpers import HelperRegistry
from patchbay.errors import Conflict, InvalidRequest, PermissionDenied
from patchbay.schemas.helpers import Capability, HelperManifest
from patchbay.schemas.users import UserRead
from patchbay.store import helpers as rows
from patchbay.store.db import Database


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[HelperRegistry]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    await db.migrate()
    helpers = HelperRegistry(
        db, HelperSettings(allowed_url_hosts=["ocr"]), key="k", down_after_s=30
    )
    try:
        yield helpers
    finally:
        await helpers.close()
        await db.close()


def manifest(name: str, base_url: str) -> HelperManifest:
    capability = Capability(name="read", description="Reads.")
    return HelperManifest(name=name, base_url=base_url, capabilities=[capability])


async def test_an_address_in_another_spelling_is_the_same_host(registry: HelperRegistry) -> None:
    await registry.register(manifest("calc", "http://[2001:db8::5]:80"), peer="2001:db8::5")
    await registry.register(manifest("calc", "http://[2001:db8::5]:81"), peer="2001:db8:0::5")
    await registry.heartbeat("calc", peer="2001:0db8:0:0:0:0:0:5")
    await registry.leave("calc", peer="2001:db8::0005")


async def test_another_address_is_another_host(registry: HelperRegistry) -> None:
    await registry.register(manifest("calc", "http://10.0.0.5:80"), peer="10.0.0.5")
    with pytest.raises(Conflict, match="patchbay helpers remove calc"):
        await registry.register(manifest("calc", "http://10.0.0.9:80"), peer="10.0.0.9")
    for refused in (registry.heartbeat, registry.leave):
        with pytest.raises(Conflict):
            await refused("calc", peer="10.0.0.9")
    assert (await registry.get("calc")).base_url == "http://10.0.0.5:80"


async def test_a_helper_at_an_allowed_host_keeps_its_name_from_any_address(
    registry: HelperRegistry,
) -> None:
    await registry.register(manifest("ocr", "http://ocr:8000"), peer="172.18.0.5")
    # restarted in a new container: another address, the same host and name
    await registry.register(manifest("ocr", "http://ocr:8001"), peer="172.18.0.9")
    await registry.heartbeat("ocr", peer="172.18.0.9")
    # whoever holds the key cannot move it to their own address, though
    with pytest.raises(Conflict):
        await registry.register(manifest("ocr", "http://172.18.0.66:80"), peer="172.18.0.66")
    assert (await registry.get("ocr")).base_url == "http://ocr:8001"


async def test_a_host_moves_its_own_helper_to_an_allowed_host(registry: HelperRegistry) -> None:
    await registry.register(manifest("calc", "http://10.0.0.5:80"), peer="10.0.0.5")
    await registry.register(manifest("calc", "http://ocr:80"), peer="10.0.0.5")
    assert (await registry.get("calc")).base_url == "http://ocr:80"


async def test_an_ipv4_helper_of_a_core_listening_on_ipv6_is_at_its_own_address(
    registry: HelperRegistry,
) -> None:
    """A core on `::` (both IPv6 and IPv4) sees an IPv4 peer as ::ffff:a.b.c.d."""
    await registry.register(manifest("calc", "http://10.0.0.5:80"), peer="::ffff:10.0.0.5")
    await registry.heartbeat("calc", peer="::ffff:10.0.0.5")
    await registry.register(manifest("local", "http://localhost:80"), peer="::ffff:127.0.0.1")
    with pytest.raises(Conflict):
        await registry.register(manifest("calc", "http://10.0.0.9:80"), peer="::ffff:10.0.0.9")
    await registry.leave("calc", peer="10.0.0.5")


THIS_MACHINE = ["localhost", "LOCALHOST", "127.0.0.1", "127.0.1.1", "127.255.255.254", "::1"]
THIS_MACHINE += ["0:0::1", "::ffff:127.0.0.2", "0.0.0.0", "::"]  # noqa: S104


@pytest.mark.parametrize("host", THIS_MACHINE)
def test_this_machine_is_one_host_in_any_spelling(host: str) -> None:
    assert host_key(host) == "localhost"


async def test_any_loopback_address_is_this_machine(registry: HelperRegistry) -> None:
    """Debian names the machine 127.0.1.1; Linux answers on all of 127.0.0.0/8: a helper there,
    calling from 127.0.0.1, was refused as not at its own host, and one registering from
    127.0.0.2 held its name as another machine's."""
    await registry.register(manifest("calc", "http://127.0.1.1:8801"), peer="127.0.0.1")
    await registry.register(manifest("calc", "http://0.0.0.0:8801"), peer="127.0.0.2")
    await registry.heartbeat("calc", peer="::1")
    await registry.leave("calc", peer="127.0.0.2")


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("OCR.Internal.", "ocr.internal"),  # a name ending in a dot is the same name
        ("10.0.0.5.", "10.0.0.5"),
        ("localhost.", "localhost"),
        ("::FFFF:10.0.0.5", "10.0.0.5"),
        ("fe80::1%eth0", "fe80::1%eth0"),  # a link-local address is its link's: the zone stays
    ],
)
def test_a_host_is_written_one_way(host: str, key: str) -> None:
    assert host_key(host) == key


async def test_a_link_local_helper_is_at_its_address_on_its_link(registry: HelperRegistry) -> None:
    """The zone is written %25 in a URL (RFC 6874), and is `%` in the peer's address."""
    await registry.register(manifest("calc", "http://[fe80::1%25eth0]:80"), peer="fe80::1%eth0")
    with pytest.raises(Conflict):
        await registry.heartbeat("calc", peer="fe80::1%eth1")  # another link, another machine
    await registry.heartbeat("calc", peer="fe80::1%eth0")


async def test_an_allowed_host_is_allowed_however_it_is_written(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    await db.migrate()
    allowed = ["OCR.internal", "2001:0db8::0007", "10.0.0.5"]
    helpers = HelperRegistry(
        db, HelperSettings(allowed_url_hosts=allowed), key="k", down_after_s=30
    )
    try:
        for name, url in [
            ("ocr", "http://ocr.internal:80"),
            ("v6", "http://[2001:db8::7]:80"),
            ("v4", "http://[::ffff:10.0.0.5]:80"),
        ]:
            await helpers.register(manifest(name, url), peer="192.0.2.9")
            await helpers.heartbeat(name, peer="192.0.2.9")
    finally:
        await helpers.close()
        await db.close()


@pytest.mark.parametrize("url", ["http://[::1", "http://[calc]:80/", "http://:80", "https:///x"])
async def test_a_base_url_with_no_host_is_refused(registry: HelperRegistry, url: str) -> None:
    with pytest.raises(InvalidRequest, match="names no host"):
        await registry.register(manifest("calc", url), peer="127.0.0.1")


@pytest.mark.parametrize(
    ("url", "written"),
    [
        ("file:///etc/passwd", "its scheme is 'file'"),
        ("ftp://127.0.0.1/", "its scheme is 'ftp'"),
        ("gopher://127.0.0.1:70/", "its scheme is 'gopher'"),
        ("ws://127.0.0.1:80/", "its scheme is 'ws'"),
        ("calc:80", "its scheme is 'calc'"),
        ("//127.0.0.1:80", "it names no scheme"),
        ("/capabilities", "it names no scheme"),
    ],
)
async def test_a_base_url_is_http_or_https(
    registry: HelperRegistry, url: str, written: str
) -> None:
    """ftp:// and a URL of no scheme at the helper's own host were taken, and every call failed."""
    with pytest.raises(InvalidRequest) as refused:
        await registry.register(manifest("calc", url), peer="127.0.0.1")
    assert f"http:// or https:// only ({written}): write it as http://host:port" in str(
        refused.value
    )


@pytest.mark.parametrize("url", ["HTTP://127.0.0.1:80", "https://127.0.0.1:443/base"])
async def test_http_and_https_in_any_case_are_taken(registry: HelperRegistry, url: str) -> None:
    await registry.register(manifest("calc", url), peer="127.0.0.1")


@pytest.mark.parametrize(
    ("host", "canonical"),
    [
        ("127.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0X7F.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("017.0.0.1", "15.0.0.1"),  # octal, to the resolver
        ("10.0.0.05", "10.0.0.5"),
        ("10.5.", "10.0.0.5"),
    ],
)
async def test_an_ipv4_address_spelled_another_way_is_refused_naming_its_spelling(
    registry: HelperRegistry, host: str, canonical: str
) -> None:
    """The resolver reads 127.1 as 127.0.0.1, which `ipaddress` reads as a name: a helper at it
    was refused as not at its own host (127.0.0.1), and one at an allowed 2130706433 was taken at
    the core's own machine as another host."""
    with pytest.raises(InvalidRequest, match=rf"spelled another way: write it as {canonical}$"):
        await registry.register(manifest("calc", f"http://{host}:80"), peer=canonical)


@pytest.mark.parametrize("host", ["127.1", "0x7f.1", "2130706433"])
def test_an_allowed_host_spelled_as_no_address_is_refused_naming_its_spelling(host: str) -> None:
    """PATCHBAY_HELPERS__ALLOWED_URL_HOSTS='["127.1"]' allowed a name no URL may now name."""
    with pytest.raises(
        ValidationError, match=rf"{host} is the IPv4 address 127.0.0.1: write it as 127.0.0.1"
    ):
        HelperSettings(allowed_url_hosts=["ocr", host])


async def test_an_mcp_server_at_no_http_url_is_refused_before_it_is_asked(
    registry: HelperRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    async def manifest_of(name: str, url: str) -> HelperManifest:
        asked.append(url)
        raise AssertionError("asked")

    monkeypatch.setattr(mcp, "manifest_of", manifest_of)
    admin = UserRead(
        id="u1",
        number=1,
        name="root",
        role="admin",
        profile={},
        instruction_recording=False,
        created_at=datetime.now(UTC),
    )
    for url, refused in [
        ("file:///srv/mcp", "scheme is 'file'"),
        ("http://127.1/mcp", "127.0.0.1"),
    ]:
        with pytest.raises(InvalidRequest, match=refused):
            await registry.add_mcp(admin, "tools", url)
    assert asked == []


async def test_a_name_no_host_holds_is_refused_in_words(registry: HelperRegistry) -> None:
    """A helper registered before hosts were kept, with a URL of no host, is held by none."""
    async with registry._db.begin() as conn:
        broken = manifest("calc", "http://10.0.0.5:80").model_copy(update={"base_url": "calc"})
        await rows.upsert_helper(conn, broken, datetime.now(UTC), host="")
    for refused in (
        partial(registry.register, manifest("calc", "http://10.0.0.9:80")),
        partial(registry.heartbeat, "calc"),
        partial(registry.leave, "calc"),
    ):
        with pytest.raises(Conflict) as caught:
            await refused(peer="10.0.0.9")
        assert "()" not in caught.value.message
        assert "'calc' is a helper of no known host;" in caught.value.message


async def test_a_helper_from_an_address_not_known_is_told_so(registry: HelperRegistry) -> None:
    with pytest.raises(PermissionDenied, match=r"\(an address not known\)"):
        await registry.register(manifest("calc", "http://10.0.0.5:80"), peer=None)
