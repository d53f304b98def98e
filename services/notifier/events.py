"""The notifier's outgoing events: `sent` / `opened` on notify.events, and the experiment
exposure a notification's A/B copy makes when it is sent."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from shared.events import (
    EXPERIMENT_EXPOSURES,
    NOTIFY_EVENTS,
    ExperimentExposure,
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


def exposure_event(experiment: str, variant: str, user_id: str, at: datetime) -> OutgoingEvent:
    """The user was shown an experiment's variant (once per user: the id is derived from both)."""
    exposure = ExperimentExposure(
        event_id=stable_id("exposure", experiment, user_id),
        experiment=experiment,
        variant=variant,
        user_id=user_id,
        source="notifier",
        occurred_at=at,
    )
    return OutgoingEvent(EXPERIMENT_EXPOSURES, user_id, exposure.model_dump_json())
