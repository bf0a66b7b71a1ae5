"""a waiting job keeps the options and the streaming choice of its turn, so that any core may
queue it: a core that took up the waiting jobs of a stopped one ran them with the model's own

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: the jobs stored before run as they did (the model's own options,
    # unstreamed), and a turn that is not waiting stores nothing more than it did.
    op.add_column("jobs", sa.Column("options", sa.JSON(), nullable=True))
    op.add_column("jobs", sa.Column("stream", sa.Boolean(), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("patchbay never migrates down: restore a backup instead")
