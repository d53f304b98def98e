"""task_progress's own metrics (the ones every service has are in shared/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter

REFUNDS = Counter(
    "jifen_task_refunds_total",
    "Order refunds seen by task_progress, by outcome: applied (its order is known), waiting "
    "(kept until its order_paid arrives), duplicate (refund number seen before), invalid",
    ["outcome"],
)
CLAWBACKS = Counter(
    "jifen_task_clawbacks_total",
    "Clawback commands emitted for grants of refunded orders",
    ["asset"],
)
GRANTS_ISSUED = Counter("jifen_grants_total", "Grants issued by task completions", ["task_id"])
