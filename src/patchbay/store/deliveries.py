"""Deliveries: the channel's id of each incoming message a turn was made of, claimed in the
transaction that stores the turn, so the same message delivered again is refused."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from patchbay.errors import DuplicateDelivery
from patchbay.store.tables import deliveries, messages


def claim_delivery(
    conn: Connection,
    *,
    user_id: str,
    channel: str,
    delivery_id: str,
    message_id: str,
    job_id: str,
    now: datetime,
) -> None:
    """Record that the turn of `message_id` and `job_id` answers this delivery.

    Raises `DuplicateDelivery`, naming the earlier turn, when one took it before; the caller's
    transaction then rolls back. Race-safe through the primary key: of two transactions claiming
    one delivery at once, the second waits for the first and finds its row.
    """
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    row = {
        "user_id": user_id,
        "channel": channel,
        "delivery_id": delivery_id,
        "message_id": message_id,
        "job_id": job_id,
        "created_at": now,
    }
    claimed = conn.execute(dialect.insert(deliveries).values(row).on_conflict_do_nothing())
    if claimed.rowcount == 1:
        return
    earlier = conn.execute(
        select(messages.c.chat_id, deliveries.c.message_id, deliveries.c.job_id)
        .join(messages, messages.c.id == deliveries.c.message_id)
        .where(
            deliveries.c.user_id == user_id,
            deliveries.c.channel == channel,
            deliveries.c.delivery_id == delivery_id,
        )
    ).one()
    raise DuplicateDelivery(
        f"{channel} delivered this message before; it is job {earlier.job_id}, "
        "so there is nothing more to do",
        chat_id=earlier.chat_id,
        message_id=earlier.message_id,
        job_id=earlier.job_id,
    )
