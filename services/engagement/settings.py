from __future__ import annotations

from pydantic import Field

from shared.settings import JifenSettings


class Settings(JifenSettings):
    service_name: str = "engagement"
    database_name: str = "jifen_engagement"
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis-protocol server holding the leaderboard index (PostgreSQL holds "
        "the scores; the index is rebuilt from it when missing)",
    )
    redis_timeout_s: float = Field(2.0, gt=0, le=60, description="Per call to the index")
    board_grace_s: int = Field(
        300, ge=0, le=86_400, description="how long after a period ends late events still count"
    )
    board_close_interval_s: float = Field(
        5.0, gt=0, le=3600, description="how often ended periods are looked for and closed"
    )
    board_standings_kept: int = Field(
        100,
        ge=1,
        le=100_000,
        description="ranks frozen in a closed period's standings (at least every prize rank)",
    )
    index_check_interval_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="how often the worker looks for boards whose index is missing (a lost or "
        "flushed Redis) and rebuilds them from PostgreSQL",
    )
    index_catch_up_s: int = Field(
        600,
        ge=0,
        le=86_400,
        description="scores changed this recently are written to the index again when a "
        "worker starts (what a killed predecessor committed but had not written yet)",
    )
    index_write_batch: int = Field(
        5000, ge=1, le=100_000, description="scores written to the index per pipeline"
    )
    history_days_kept: int = Field(
        90, ge=1, le=3650, description="daily rank snapshots kept per board"
    )
    flag_days: int = Field(
        30,
        ge=0,
        le=3650,
        description="how long a user stays off the leaderboards after anti-farming diverted "
        "one of their behaviors (0: diversions never exclude anyone)",
    )
    qualification_days: int = Field(
        365, ge=1, le=3650, description="rolling window of growth earned that qualifies a tier"
    )
    downgrade_grace_days: int = Field(
        30,
        ge=0,
        le=365,
        description="days after a tier's qualification window ends before it is lowered",
    )
    tier_sweep_interval_s: float = Field(
        60.0, gt=0, le=86_400, description="how often tiers due for evaluation are re-evaluated"
    )
    sweep_batch: int = Field(500, ge=1, le=100_000)
    profile_cache_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="how long a process reuses the display names it read for the boards (a "
        "name changed through another process shows on its boards after at most this long)",
    )
    profile_cache_size: int = Field(
        100_000, ge=0, le=10_000_000, description="display names a process keeps for the boards"
    )

    @property
    def history_hours(self) -> float:
        """The daily rank snapshots' retention, in the hours the retention sweeper counts."""
        return self.history_days_kept * 24.0
