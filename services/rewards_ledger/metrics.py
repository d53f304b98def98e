"""rewards_ledger's own metrics (the ones every service has are in shared/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter

POINTS_MOVED = Counter("jifen_points_total", "Points moved by the ledger", ["kind"])
