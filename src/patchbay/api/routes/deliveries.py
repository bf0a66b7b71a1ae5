"""Deliveries: the turn that took one of the caller's; and answers owed to channels: a channel
module lists the answers it has yet to send, holds those it sends (a lease), and says when it sent
one (module token only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from patchbay.api.deps import CurrentUser, HubDep, ModuleCaller
from patchbay.core.deliveries import MAX_OWED_PAGE
from patchbay.errors import DeliveryNotFound
from patchbay.schemas.deliveries import AnswerSent, DeliveryRead, HoldOwed, OwedAnswer
from patchbay.schemas.senders import CHANNEL_NAME
from patchbay.schemas.turns import MAX_DELIVERY_ID, REGENERATES

router = APIRouter(prefix="/v1", tags=["deliveries"])
# A channel, or its regenerates (`web:regenerate`), which are kept apart from its messages.
DELIVERY_CHANNEL = CHANNEL_NAME.removesuffix("$") + f"(?:{REGENERATES})?$"


@router.get("/deliveries/turn", response_model=DeliveryRead)
async def delivery_turn(
    hub: HubDep,
    user: CurrentUser,
    channel: Annotated[str, Query(pattern=DELIVERY_CHANNEL)],
    delivery_id: Annotated[str, Query(min_length=1, max_length=MAX_DELIVERY_ID)],
) -> DeliveryRead:
    """The turn that took the caller's `delivery_id` on `channel` (a turn's `delivery_id`), to
    follow its job; 404 while no turn has. A channel process that hands a message on before its
    turn exists (a phone call's redirect) finds the turn here, whichever process made it. A
    regenerate's `delivery_id` is found on `<channel>:regenerate` (its `user_message_id` is the
    question answered again)."""
    found = await hub.deliveries.find(user.id, channel, delivery_id)
    if found is None:
        raise DeliveryNotFound(
            f"no turn took {channel} delivery {delivery_id!r} (yet); ask again later"
        )
    return found


@router.get("/deliveries/owed", response_model=list[OwedAnswer])
async def owed_answers(
    hub: HubDep,
    _module: ModuleCaller,
    channel: Annotated[str, Query(pattern=CHANNEL_NAME)],
    limit: Annotated[int, Query(ge=1, le=MAX_OWED_PAGE)] = 100,
) -> list[OwedAnswer]:
    """The answers `channel` has yet to send (its turns given a `reply`), oldest first; each
    with the turn's ids, to follow its job, and the `reply` the channel stored with it."""
    return await hub.deliveries.owed(channel, limit=limit)


@router.post("/deliveries/owed/hold", response_model=list[OwedAnswer])
async def hold_owed(data: HoldOwed, hub: HubDep, _module: ModuleCaller) -> list[OwedAnswer]:
    """A channel process renews its hold (a lease) on the answers it is sending and takes up to
    `limit` more it may send: those no process holds, whose holder's lease ran out, or its own
    from before it restarted. Each answer is held by one process at a time."""
    return await hub.deliveries.hold(data)


@router.post("/deliveries/answered", status_code=204)
async def answer_sent(data: AnswerSent, hub: HubDep, _module: ModuleCaller) -> None:
    """The channel sent the answer to this delivery: it is owed no more. Saying it again is
    harmless; a delivery the core does not know is a 404."""
    await hub.deliveries.answered(data)
