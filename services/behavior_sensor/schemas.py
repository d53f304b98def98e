"""behavior_sensor's HTTP bodies (the ingest body is the shared BehaviorEnvelope, read by
hand in api.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DivertedDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, max_length=64)
    event_id: str = Field(min_length=1, max_length=128)
    note: str = Field("", max_length=500, description="why (kept in the behavior's reason)")
    by: str = Field("operations", min_length=1, max_length=64, description="who decided")
