"""The notifier's outgoing events: `sent` / `opened` on notify.events (the exposure a
notification's A/B copy makes when it is sent is `shared.experiments.exposure_event`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from shared.events import (
    NOTIFY_EVENTS,
    NotifyEvent,
    stable_id,
)
from shared.messaging import OutgoingEvent

NotifyType = Literal["sent", "opened"]  # NotifyEvent.type


def notify_event(kind: NotifyType, job: Any, provider: str | None, at: datetime) -> OutgoingEvent:
    """What happened to one notification (`job`: a claimed Job or a notification row)."""
    event = NotifyEvent(
        type=kind,
        event_id=stable_id("notify", job.id, kind),
        notification_id=job.id,
        user_id=job.user_id,
        category=job.category,
        trigger=job.trigger,
        campaign_id=job.campaign_id,
        experiment=job.experiment,
        variant=job.variant,
        provider=provider,
        occurred_at=at,
    )
    return OutgoingEvent(NOTIFY_EVENTS, job.user_id, event.model_dump_json())
