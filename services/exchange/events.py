"""The exchange.events messages a redemption's changes publish (through the outbox)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange.models import messaging
from services.exchange.repository import Redemption
from shared.events import EXCHANGE_EVENTS, ExchangeEvent
from shared.messaging import OutgoingEvent, add_to_outbox

# The types ExchangeEvent accepts (mypy checks this list against its `type` field).
RedemptionEventType = Literal[
    "redemption.completed",
    "redemption.failed",
    "redemption.cancelled",
    "redemption.shipped",
    "redemption.delivered",
]
# The event of each fulfilment step a redemption reaches.
FULFILMENT_EVENTS: dict[str, RedemptionEventType] = {
    "shipped": "redemption.shipped",
    "delivered": "redemption.delivered",
}


def redemption_events(
    rows: list[tuple[Redemption, RedemptionEventType]], now: datetime
) -> list[OutgoingEvent]:
    """One exchange.events message per (redemption row, event type), keyed by user."""
    events = []
    for row, event_type in rows:
        event = ExchangeEvent(
            type=event_type,
            redemption_id=row.id,
            user_id=row.user_id,
            item_id=row.item_id,
            item_type=row.item_type,
            quantity=row.quantity,
            points=row.points,
            status=row.status,
            failure_code=row.failure_code,
            compensated=row.compensated,
            fulfilment_status=row.fulfilment_status,
            reward=row.reward,
            occurred_at=now,
            requested_at=row.created_at,
        )
        events.append(OutgoingEvent(EXCHANGE_EVENTS, row.user_id, event.model_dump_json()))
    return events


async def emit(session: AsyncSession, rows: list[tuple[Redemption, RedemptionEventType]]) -> None:
    """Queue the messages of these (redemption row, event type) pairs in the outbox."""
    if events := redemption_events(rows, datetime.now(UTC)):
        await add_to_outbox(session, messaging.outbox, events)
