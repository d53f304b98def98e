from __future__ import annotations

from pydantic import Field

from shared.settings import JifenSettings


class Settings(JifenSettings):
    service_name: str = "rewards_ledger"
    database_name: str = "jifen_rewards_ledger"
    default_points_validity_days: int = Field(365, ge=1, le=36500)
    expiring_soon_days: int = Field(30, ge=1, le=3650)
    expiry_sweep_interval_s: float = Field(60.0, gt=0)
    expiry_sweep_batch: int = Field(500, ge=1, le=10_000)
    grants_topic: str = "rewards.grants"
