"""Deliveries (see `schemas.deliveries`): the turn that took one, the answers a channel has yet to
send, and its word that it sent one."""

from __future__ import annotations

from datetime import UTC, datetime

from patchbay.errors import NotFound
from patchbay.schemas.deliveries import AnswerSent, DeliveryRead, HoldOwed, OwedAnswer
from patchbay.store import deliveries as rows
from patchbay.store.db import Database

MAX_OWED_PAGE = 500


class DeliveryService:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def find(self, user_id: str, channel: str, delivery_id: str) -> DeliveryRead | None:
        """The turn that took the user's delivery; None while none has (yet)."""
        async with self._db.connect() as conn:
            taken = await conn.run_sync(
                lambda sync: rows.taken_delivery(
                    sync, user_id=user_id, channel=channel, delivery_id=delivery_id
                )
            )
        if taken is None:
            return None
        return DeliveryRead(
            channel=channel,
            delivery_id=delivery_id,
            chat_id=taken.chat_id,
            user_message_id=taken.message_id,
            job_id=taken.job_id,
            owed=taken.owed,
        )

    async def owed(self, channel: str, *, limit: int = MAX_OWED_PAGE) -> list[OwedAnswer]:
        async with self._db.connect() as conn:
            return await conn.run_sync(
                lambda sync: rows.owed_answers(sync, channel=channel, limit=limit)
            )

    async def hold(self, hold: HoldOwed) -> list[OwedAnswer]:
        now = datetime.now(UTC)
        return await self._db.write(lambda conn: rows.hold_owed(conn, hold, now=now))

    async def answered(self, sent: AnswerSent) -> None:
        now = datetime.now(UTC)
        found = await self._db.write(
            lambda conn: rows.answered(
                conn,
                channel=sent.channel,
                user_id=sent.user_id,
                delivery_id=sent.delivery_id,
                now=now,
            )
        )
        if not found:
            raise NotFound(f"{sent.channel} has no delivery {sent.delivery_id!r} of that user")
