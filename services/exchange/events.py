"""The exchange.events messages a redemption's changes publish (through the outbox)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange.models import messaging
from shared.events import EXCHANGE_EVENTS, ExchangeEvent
from shared.messaging import OutgoingEvent, add_to_outbox


def redemption_events(rows: list[tuple[Any, str]], now: datetime) -> list[OutgoingEvent]:
    """One exchange.events message per (redemption row, event type), keyed by user."""
    events = []
    for row, event_type in rows:
        r = row._mapping
        event = ExchangeEvent(
            type=event_type,  # type: ignore[arg-type]
            redemption_id=r["id"],
            user_id=r["user_id"],
            item_id=r["item_id"],
            item_type=r["item_type"],
            quantity=r["quantity"],
            points=r["points"],
            status=r["status"],
            failure_code=r["failure_code"],
            compensated=r["compensated"],
            fulfilment_status=r["fulfilment_status"],
            reward=r["reward"],
            occurred_at=now,
        )
        events.append(OutgoingEvent(EXCHANGE_EVENTS, r["user_id"], event.model_dump_json()))
    return events


async def emit(session: AsyncSession, rows: list[tuple[Any, str]]) -> None:
    """Queue the messages of these (redemption row, event type) pairs in the outbox."""
    if events := redemption_events(rows, datetime.now(UTC)):
        await add_to_outbox(session, messaging.outbox, events)
