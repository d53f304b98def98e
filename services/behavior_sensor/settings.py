from __future__ import annotations

from pydantic import Field

from shared.settings import JifenSettings


class Settings(JifenSettings):
    service_name: str = "behavior_sensor"
    database_name: str = "jifen_behavior_sensor"
    max_batch_events: int = Field(1000, ge=1, le=10_000)
    # HTTP group commit (services/behavior_sensor/intake.py): requests of at most this many
    # behaviors that arrive together share one transaction, up to this many requests.
    intake_group_max_events: int = Field(10, ge=0, le=1000)
    intake_group_max_requests: int = Field(200, ge=1, le=10_000)
    intake_groups_in_flight: int = Field(2, ge=1, le=16)
    # Anti-farming: at most N behaviors per user and action per window (by occurred_at);
    # the excess is diverted (kept, counted, published on behavior.diverted), not dropped.
    farming_window_seconds: int = Field(3600, ge=1)
    farming_default_limit: int | None = Field(600, ge=1)
    farming_action_limits: dict[str, int] = Field(default_factory=dict)
    # Enrichment seam: empty URL = no-op enricher.
    enricher_url: str = Field("", max_length=2000, description="empty: no enrichment")
    enricher_timeout_s: float = Field(0.5, gt=0)
    enricher_retries: int = Field(2, ge=0, le=10)
    processor_batch_size: int = Field(500, ge=1, le=10_000)
    processor_poll_ms: int = Field(100, ge=5)
