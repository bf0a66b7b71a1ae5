"""a helper's host spelled as the core spells it: 0009 wrote an IPv4 helper's ::ffff:a.b.c.d URL
as IPv6, any loopback address but 127.0.0.1 and ::1 as another machine, a name's ending dot and a
URL's %25 zone as they came

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _host(manifest: object) -> str:
    """The host of the helper's base URL, as the core of this revision spells it."""
    url = manifest.get("base_url") if isinstance(manifest, dict) else None
    try:
        host = urlsplit(url).hostname if isinstance(url, str) else None
    except ValueError:  # brackets around no IPv6 address: no host
        host = None
    if host and ":" in host:
        host = host.replace("%25", "%", 1)  # an IPv6 zone, as the HTTP client and peers write it
    host = host.removesuffix(".") if host else host
    if not host:
        return ""  # nobody's: only an admin can replace or remove it
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        host = host.lower()
        return "localhost" if host == "localhost" else host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return "localhost" if address.is_loopback or address.is_unspecified else address.compressed


def upgrade() -> None:
    conn = op.get_bind()
    found = conn.execute(sa.text("SELECT name, manifest, host FROM helpers"))
    for name, stored, host in found.all():
        manifest = json.loads(stored) if isinstance(stored, str) else stored
        spelled = _host(manifest)
        if spelled != host:
            conn.execute(
                sa.text("UPDATE helpers SET host = :host WHERE name = :name"),
                {"host": spelled, "name": name},
            )


def downgrade() -> None:
    raise NotImplementedError("patchbay never migrates down: restore a backup instead")
