from __future__ import annotations

from pydantic import Field

from shared.settings import JifenSettings


class Settings(JifenSettings):
    service_name: str = "insights"
    database_name: str = "jifen_insights"
    exchange_url: str = Field(
        "http://127.0.0.1:8004",
        description="Base URL of the exchange: the catalog recommendations are chosen from",
    )
    task_progress_url: str = Field(
        "http://127.0.0.1:8002",
        description="Base URL of task_progress: the rules whose task-periods a behavior starts",
    )
    ledger_url: str = Field(
        "http://127.0.0.1:8003",
        description="Base URL of rewards_ledger: points about to expire (expiry-aware "
        "recommendations and the expiring-pile gauge)",
    )
    upstream_timeout_s: float = Field(
        5.0, gt=0, le=60, description="Per call to the exchange, task_progress or the ledger"
    )
    reference_refresh_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="How often the catalog and the task rules are copied from their services",
    )
    expiring_refresh_s: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="How often the points expiring soon are read from the ledger",
    )
    expiring_window_days: int = Field(
        7, ge=1, le=31, description="What 'expiring soon' means, in days (reasons and gauge)"
    )
    gauges_refresh_s: float = Field(
        30.0, gt=0, le=3600, description="How often the KPI gauges on /metrics are recomputed"
    )
    model_refresh_s: float = Field(
        10.0,
        gt=0,
        le=86_400,
        description="How old the in-memory recommender (co-redemptions, popularity, item "
        "texts) may get before a request rebuilds it",
    )
    popularity_days: int = Field(
        7, ge=1, le=90, description="Window of redemptions that makes an item popular"
    )
    holder_threshold: int = Field(
        100,
        ge=1,
        le=1_000_000_000,
        description="Points a user must hold to count in the redeemer rate's denominator",
    )
    recommendations_per_category: int = Field(
        2, ge=1, le=100, description="Most recommended items of one category"
    )
