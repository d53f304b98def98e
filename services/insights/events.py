"""Insights' outgoing events: the exposure an assignment logs on experiment.exposures."""

from __future__ import annotations

from datetime import datetime

from shared.events import EXPERIMENT_EXPOSURES, ExperimentExposure, stable_id
from shared.messaging import OutgoingEvent


def exposure_event(experiment: str, variant: str, user_id: str, at: datetime) -> OutgoingEvent:
    """The user was shown the variant (once per user: the id is derived from both)."""
    exposure = ExperimentExposure(
        event_id=stable_id("exposure", experiment, user_id),
        experiment=experiment,
        variant=variant,
        user_id=user_id,
        source="insights",
        occurred_at=at,
    )
    return OutgoingEvent(EXPERIMENT_EXPOSURES, user_id, exposure.model_dump_json())
