"""What the sensor publishes: a behavior on behavior.events, or on behavior.diverted with the
reason the anti-farming limit held it back (both keyed by user, through the outbox)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.behavior_sensor.domain import behavior_id
from shared.events import BEHAVIOR_DIVERTED, BEHAVIOR_EVENTS, BehaviorEvent
from shared.messaging import OutgoingEvent


def behavior_event(row: Any, enrichment: dict[str, Any], received_at: datetime) -> BehaviorEvent:
    """The normalized event of a received behavior (a row of received_events)."""
    return BehaviorEvent(
        behavior_id=behavior_id(row.source, row.event_id),
        event_id=row.event_id,
        source=row.source,
        user_id=row.user_id,
        action=row.action,
        occurred_at=row.occurred_at,
        attributes=row.attributes,
        enrichment=enrichment,
        received_at=received_at,
    )


def published(event: BehaviorEvent, traceparent: str | None = None) -> OutgoingEvent:
    return OutgoingEvent(BEHAVIOR_EVENTS, event.user_id, event.model_dump_json(), traceparent)


def diverted(event: BehaviorEvent, reason: str, traceparent: str | None = None) -> OutgoingEvent:
    payload = {**event.model_dump(mode="json"), "reason": reason}
    return OutgoingEvent(BEHAVIOR_DIVERTED, event.user_id, payload, traceparent)
