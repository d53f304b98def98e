from __future__ import annotations

from pydantic import Field

from shared.settings import JifenSettings


class Settings(JifenSettings):
    service_name: str = "exchange"
    database_name: str = "jifen_exchange"
    ledger_url: str = Field(
        "http://127.0.0.1:8003", description="Base URL of rewards_ledger (debits and refunds)"
    )
    ledger_timeout_s: float = Field(3.0, gt=0, le=60, description="Per call to the ledger")
    recovery_interval_s: float = Field(
        2.0, gt=0, description="How often unfinished redemptions and cancellations are retried"
    )
    recovery_batch: int = Field(100, ge=1, le=10_000)
    pending_deadline_s: float = Field(
        120.0,
        gt=0,
        description="A redemption whose debit is still unconfirmed after this long is "
        "compensated (debit voided or refunded, stock released) instead of completed",
    )
    redeem_batch_max: int = Field(
        200,
        ge=1,
        le=1000,
        description="Most redemption requests handled together (those that arrived while "
        "earlier ones were being handled); 1 turns batching off",
    )
    redeem_batches_in_flight: int = Field(
        1,
        ge=1,
        le=16,
        description="Redemption batches in progress at once; 1 makes the largest batches, "
        "which cost the least CPU per redemption (docs/BENCHMARKS.md, hot item)",
    )
    redeem_batch_linger_ms: float = Field(
        30.0,
        ge=0,
        le=1000,
        description="After a batch of several redemptions, how long the next batch may wait "
        "for their callers to come back (it goes as soon as they have); 0 never waits",
    )
    coupon_validity_days: int = Field(30, ge=1, le=3650)
    quick_options_warning_days: int = Field(7, ge=1, le=365)
    insights_url: str = Field(
        "http://127.0.0.1:8007",
        description="Base URL of insights: the recommender quick options take their items from",
    )
    task_progress_url: str = Field(
        "http://127.0.0.1:8002",
        description="Base URL of task_progress: the task rules quick options suggest to a user "
        "who cannot afford anything yet",
    )
    quick_options_timeout_s: float = Field(
        0.5,
        gt=0,
        le=10,
        description="Per call to insights or task_progress from quick options; past it the "
        "options come from the catalog alone (or without tasks)",
    )
    task_rules_refresh_s: float = Field(
        300.0, gt=0, le=86_400, description="How long quick options keep a copy of the task rules"
    )
