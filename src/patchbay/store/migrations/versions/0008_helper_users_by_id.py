"""helpers limited to users name them by id: a name can be changed (and taken) by its user

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    found = conn.execute(sa.text("SELECT name, id FROM users"))
    ids_by_name: dict[str, str] = {row.name: row.id for row in found}
    ids = set(ids_by_name.values())
    limited = conn.execute(
        sa.text("SELECT name, allowed_users FROM helpers WHERE allowed_users IS NOT NULL")
    )
    for helper, stored in limited.all():
        users = json.loads(stored) if isinstance(stored, str) else stored
        if not isinstance(users, list):
            continue
        # A name of no user now stays as it is: it matches nobody, as an id of nobody.
        by_id = [user if user in ids else ids_by_name.get(user, user) for user in users]
        if by_id != users:
            conn.execute(
                sa.text("UPDATE helpers SET allowed_users = :users WHERE name = :name"),
                {"users": json.dumps(by_id), "name": helper},
            )


def downgrade() -> None:
    raise NotImplementedError("patchbay never migrates down: restore a backup instead")
