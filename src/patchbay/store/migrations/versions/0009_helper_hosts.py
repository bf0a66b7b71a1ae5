"""a helper's name belongs to the host it registered from: another host may not take it over

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _host(manifest: object) -> str:
    """The host of the helper's base URL, as the core of this revision spells it."""
    url = manifest.get("base_url") if isinstance(manifest, dict) else None
    host = urlsplit(url).hostname if isinstance(url, str) else None
    if not host:
        return ""  # nobody's: only an admin can replace or remove it
    try:
        host = ipaddress.ip_address(host).compressed
    except ValueError:
        host = host.lower()
    return "localhost" if host in LOOPBACK else host


def upgrade() -> None:
    op.add_column(
        "helpers", sa.Column("host", sa.String(length=255), nullable=False, server_default="")
    )
    conn = op.get_bind()
    for name, stored in conn.execute(sa.text("SELECT name, manifest FROM helpers")).all():
        manifest = json.loads(stored) if isinstance(stored, str) else stored
        conn.execute(
            sa.text("UPDATE helpers SET host = :host WHERE name = :name"),
            {"host": _host(manifest), "name": name},
        )


def downgrade() -> None:
    raise NotImplementedError("patchbay never migrates down: restore a backup instead")
