"""Deliveries: the channel's id of each incoming message a turn was made of, claimed in the
transaction that stores the turn, so the same message delivered again is refused; and the answers
owed to channels that send them themselves (a turn given a `reply`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from patchbay.errors import Conflict, DuplicateDelivery
from patchbay.schemas.deliveries import HoldOwed, OwedAnswer
from patchbay.schemas.turns import REGENERATES
from patchbay.store.tables import deliveries, jobs, messages

_OWED = and_(deliveries.c.reply.is_not(None), deliveries.c.answered_at.is_(None))
# How long the process that started a turn holds its owed answer before it first renews the hold.
OWED_HOLD = timedelta(minutes=5)


def claim_delivery(
    conn: Connection,
    *,
    user_id: str,
    channel: str,
    delivery_id: str,
    message_id: str,
    job_id: str,
    now: datetime,
    reply: dict[str, object] | None = None,
    holder: str | None = None,
) -> None:
    """Record that the turn of `message_id` and `job_id` answers this delivery; with `reply`, its
    answer is owed to the channel until `answered`.

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
        "reply": reply,
        "held_by": holder if reply is not None else None,
        "held_until": now + OWED_HOLD if reply is not None else None,
    }
    claimed = conn.execute(dialect.insert(deliveries).values(row).on_conflict_do_nothing())
    if claimed.rowcount == 1:
        return
    taken = taken_delivery(conn, user_id=user_id, channel=channel, delivery_id=delivery_id)
    raise taken or Conflict(f"{_what(channel)} before; send it again")


def taken_delivery(
    conn: Connection, *, user_id: str, channel: str, delivery_id: str
) -> DuplicateDelivery | None:
    """The refusal for a delivery a turn took before, naming that turn; None if none did."""
    earlier = conn.execute(
        select(
            messages.c.chat_id,
            deliveries.c.message_id,
            deliveries.c.job_id,
            _OWED.label("owed"),
        )
        .join(messages, messages.c.id == deliveries.c.message_id)
        .where(
            deliveries.c.user_id == user_id,
            deliveries.c.channel == channel,
            deliveries.c.delivery_id == delivery_id,
        )
    ).first()
    if earlier is None:
        return None
    return DuplicateDelivery(
        f"{_what(channel)} before; it is job {earlier.job_id}, so there is nothing more to do",
        chat_id=earlier.chat_id,
        message_id=earlier.message_id,
        job_id=earlier.job_id,
        owed=bool(earlier.owed),
    )


def _what(channel: str) -> str:
    """What a delivery on `channel` was, for a refusal of it again."""
    if channel.endswith(REGENERATES):
        return f"{channel.removesuffix(REGENERATES)} asked for this answer again"
    return f"{channel} delivered this message"


def owed_answers(
    conn: Connection, *, channel: str, limit: int, where: ColumnElement[bool] | None = None
) -> list[OwedAnswer]:
    """The answers `channel` has yet to send (those `where` picks), oldest first."""
    found = conn.execute(
        select(
            deliveries.c.channel,
            deliveries.c.delivery_id,
            deliveries.c.user_id,
            messages.c.chat_id,
            deliveries.c.job_id,
            deliveries.c.message_id.label("user_message_id"),
            jobs.c.message_id.label("assistant_message_id"),
            jobs.c.model,
            deliveries.c.reply,
            deliveries.c.created_at,
            deliveries.c.held_by,
            deliveries.c.held_until,
        )
        .join(messages, messages.c.id == deliveries.c.message_id)
        .join(jobs, jobs.c.id == deliveries.c.job_id)
        .where(deliveries.c.channel == channel, _OWED, true() if where is None else where)
        .order_by(deliveries.c.created_at, deliveries.c.delivery_id)
        .limit(limit)
    )
    return [OwedAnswer.model_validate(row._mapping) for row in found]


def hold_owed(conn: Connection, hold: HoldOwed, *, now: datetime) -> list[OwedAnswer]:
    """Renew `hold.holder`'s lease on the answers it renews, and take those of `hold.take` and up
    to `hold.limit` more: those nobody holds, or whose lease ran out, or the holder's own (from
    before it restarted).
    Of two processes taking at once, each row goes to one: the update checks again."""
    until = now + timedelta(seconds=hold.lease_s)
    lease = {"held_by": hold.holder, "held_until": until}
    for key in hold.renew:
        conn.execute(
            update(deliveries)
            .where(
                _key(hold.channel, key.user_id, key.delivery_id),
                _OWED,
                deliveries.c.held_by == hold.holder,  # another's since: no longer ours to send
            )
            .values(**lease)
        )
    free = or_(
        deliveries.c.held_until.is_(None),
        deliveries.c.held_until < now,
        deliveries.c.held_by == hold.holder,
    )
    taken: list[OwedAnswer] = []
    for key in hold.take:
        where = and_(_key(hold.channel, key.user_id, key.delivery_id), free)
        if conn.execute(update(deliveries).where(where, _OWED).values(**lease)).rowcount == 1:
            taken += owed_answers(conn, channel=hold.channel, limit=1, where=where)
    skip = {(key.user_id, key.delivery_id) for key in (*hold.renew, *hold.take)}
    more: list[OwedAnswer] = []
    for owed in owed_answers(conn, channel=hold.channel, limit=hold.limit + len(skip), where=free):
        if len(more) == hold.limit:
            break
        if (owed.user_id, owed.delivery_id) in skip:
            continue
        claimed = conn.execute(
            update(deliveries)
            .where(_key(hold.channel, owed.user_id, owed.delivery_id), _OWED, free)
            .values(**lease)
        )
        if claimed.rowcount == 1:
            more.append(owed.model_copy(update=lease))
    return [*(owed.model_copy(update=lease) for owed in taken), *more]


def _key(channel: str, user_id: str, delivery_id: str) -> ColumnElement[bool]:
    return and_(
        deliveries.c.channel == channel,
        deliveries.c.user_id == user_id,
        deliveries.c.delivery_id == delivery_id,
    )


def answered(
    conn: Connection, *, channel: str, user_id: str, delivery_id: str, now: datetime
) -> bool:
    """Mark a delivery's answer sent; False when there is no such delivery. Saying it twice
    keeps the first time."""
    key = _key(channel, user_id, delivery_id)
    conn.execute(
        update(deliveries).where(key, deliveries.c.answered_at.is_(None)).values(answered_at=now)
    )
    return conn.execute(select(deliveries.c.delivery_id).where(key)).first() is not None
