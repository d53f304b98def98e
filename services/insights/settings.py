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
    recommender_experiment: str = Field(
        "recommender",
        description="Key of the experiment whose arms (item_item, user_based) choose each "
        "user's recommender; item_item serves everyone while it does not run",
    )
    # Business health (GET /v1/health/business): the seed's signals and their thresholds.
    health_window_days: int = Field(
        30, ge=1, le=366, description="Business days the redemption and expiry rates cover"
    )
    health_redemption_rate_warning: float = Field(
        0.20, ge=0, le=10, description="Points redeemed / issued under this: warning"
    )
    health_redemption_rate_critical: float = Field(
        0.10, ge=0, le=10, description="Points redeemed / issued under this: critical"
    )
    health_expiry_rate_warning: float = Field(
        0.15, ge=0, le=10, description="Points expired / issued over this: warning"
    )
    health_expiry_rate_critical: float = Field(
        0.30, ge=0, le=10, description="Points expired / issued over this: critical"
    )
    health_slow_window_s: int = Field(
        900, ge=60, le=86_400, description="Window of completed redemptions the p99 covers"
    )
    health_slow_redemption_warning_ms: int = Field(
        1000, ge=1, le=3_600_000, description="Redemption p99 (request to completion) over this"
    )
    health_slow_redemption_critical_ms: int = Field(
        2000, ge=1, le=3_600_000, description="Redemption p99 over this: critical"
    )
    health_lag_warning: int = Field(
        1000, ge=0, le=10**12, description="A consumer group this many messages behind: warning"
    )
    health_lag_critical: int = Field(
        10_000, ge=0, le=10**12, description="A consumer group this far behind: critical"
    )
    health_lag_refresh_s: float = Field(
        30.0, gt=0, le=3600, description="How often the worker reads the suite's consumer lag"
    )
    health_reconciliation_refresh_s: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="How often the worker reads the ledger's and the exchange's reconciliation "
        "(each scans its books: not every lag reading)",
    )
