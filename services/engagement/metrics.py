"""engagement's own metrics (the ones every service has are in shared/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

LATE_SCORES = Counter(
    "jifen_engagement_late_scores_total",
    "Score changes that arrived after their period had closed (after the grace) and were "
    "left out of it",
)
PERIODS_CLOSED = Counter(
    "jifen_engagement_periods_closed_total", "Leaderboard periods closed (standings frozen)"
)
PRIZES = Counter("jifen_engagement_prizes_total", "Prize grants emitted at period close", ["asset"])
BADGES_AWARDED = Counter("jifen_engagement_badges_awarded_total", "Badges awarded", ["badge"])
TIER_CHANGES = Counter(
    "jifen_engagement_tier_changes_total", "Tier changes, by direction", ["direction"]
)
INDEX_PENDING = Gauge(
    "jifen_engagement_index_pending",
    "Committed scores not yet written to the leaderboard index",
)
INDEX_REBUILDS = Counter(
    "jifen_engagement_index_rebuilds_total",
    "Leaderboard index sets rebuilt from PostgreSQL, by cause (missing, requested)",
    ["cause"],
)
