"""notifier's own metrics (the ones every service has are in shared/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

QUEUED = Counter(
    "jifen_notifier_queued_total", "Notifications queued (new ones only), by trigger", ["trigger"]
)
DECISIONS = Counter(
    "jifen_notifier_decisions_total",
    "What the dispatcher decided for a due notification: send, deferred (quiet hours), "
    "opted_out, daily_cap, marketing_cap, no_device, resumed (in flight when its replica "
    "died: sent again)",
    ["decision"],
)
ATTEMPTS = Counter(
    "jifen_notifier_attempts_total",
    "Requests to the providers, by provider and outcome (sent, retry, invalid_token, failed)",
    ["provider", "outcome"],
)
DEVICES_DEACTIVATED = Counter(
    "jifen_notifier_devices_deactivated_total",
    "Device tokens deactivated because a provider reported them invalid",
)
DISPATCH_SECONDS = Histogram(
    "jifen_notifier_dispatch_seconds",
    "One dispatch cycle (claim, send, record) of a batch",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
