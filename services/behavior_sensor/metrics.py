"""behavior_sensor's own metrics (the ones every service has are in shared/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter

EVENTS_INGESTED = Counter(
    "jifen_behavior_events_total", "Behavior events by outcome", ["source", "outcome"]
)
EVENTS_DIVERTED = Counter(
    "jifen_behavior_diverted_total",
    "Behavior events diverted by the anti-farming limit",
    ["action"],
)
ENRICHMENT_FAILURES = Counter(
    "jifen_enrichment_failures_total", "Batches the enricher could not enrich"
)
