"""The exchange's own metrics (the ones every service has are in shared/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REDEMPTIONS = Counter(
    "jifen_redemptions_total",
    "Redemptions finished, by outcome (completed, cancelled, or the failure code)",
    ["outcome"],
)
REDEMPTION_BATCH_SIZE = Histogram(
    "jifen_redemption_batch_size",
    "Redemption requests handled together as one batch (shared/batching.py)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
)
REDEMPTIONS_UNCONFIRMED = Counter(
    "jifen_redemption_ledger_unconfirmed_total",
    "Ledger calls (debits or refunds) that got no definite answer and were left to recovery",
    ["operation"],
)
