"""answers owed to channels: what a channel needs to send an answer, when it was sent, and which
channel process holds it until when

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows from before have no `reply`: nothing is owed for them (their channel answered them
    # from memory), so a channel's first start after the upgrade sends nothing again.
    op.add_column("deliveries", sa.Column("reply", sa.JSON(), nullable=True))
    op.add_column("deliveries", sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))
    # Which channel process sends an owed answer, until when (a lease it renews as it sweeps).
    op.add_column("deliveries", sa.Column("held_by", sa.String(length=200), nullable=True))
    op.add_column("deliveries", sa.Column("held_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_deliveries_owed", "deliveries", ["channel", "answered_at"])


def downgrade() -> None:
    raise NotImplementedError("patchbay never migrates down: restore a backup instead")
