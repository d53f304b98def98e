from __future__ import annotations

from pydantic import Field

from shared.settings import JifenSettings
from shared.validity import Validity


class Settings(JifenSettings):
    service_name: str = "rewards_ledger"
    database_name: str = "jifen_rewards_ledger"
    default_points_validity_days: int = Field(365, ge=1, le=36500)
    default_points_validity: Validity | None = Field(
        None,
        description="how long points stay valid, when not in days: JSON such as "
        '{"mode": "year_end", "n": 1} (until the end of next year); wins over '
        "default_points_validity_days",
    )
    expiring_soon_days: int = Field(30, ge=1, le=3650)
    expiry_sweep_interval_s: float = Field(60.0, gt=0)
    expiry_sweep_batch: int = Field(500, ge=1, le=10_000)
    grants_topic: str = "rewards.grants"
    # 积分延期: which points may be extended (expiring within the window), by how many days
    # at most, and the fee in points (a percentage of what is extended, at least the minimum).
    extension_window_days: int = Field(30, ge=1, le=3650)
    extension_max_days: int = Field(180, ge=1, le=3650)
    extension_fee_percent: float = Field(10.0, ge=0, le=100)
    extension_fee_minimum: int = Field(1, ge=1, le=1_000_000)
    # 积分抵现: how long a hold may reserve points at most, and how often holds past their
    # deadline are voided (a hold stays open at most its deadline plus this interval).
    hold_max_expires_in_s: int = Field(
        7 * 86400, ge=60, le=90 * 86400, description="the longest expires_in_s of a hold"
    )
    hold_sweep_interval_s: float = Field(
        5.0, gt=0, le=3600, description="how often holds past their deadline are voided"
    )

    @property
    def points_validity(self) -> Validity:
        """Points' default validity (a grant or an adjustment may say otherwise)."""
        return self.default_points_validity or Validity.of_days(self.default_points_validity_days)
