"""The console's own metrics: it reads every consumer group's lag for its dashboard anyway
(console/status.py), and exports it, so lag alerts need no exporter of their own and a dead
consumer's lag still grows where Prometheus sees it."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONSUMER_LAG = Gauge(
    "jifen_consumer_lag",
    "Messages on the partition past the consumer group's committed offset (at the last reading)",
    ["group", "topic", "partition"],
)

THROTTLE_LOCAL = Counter(
    "jifen_console_signin_throttle_local_total",
    "Sign-in attempts the throttle decided in this process because Valkey was unreachable "
    "(each replica then admits its own guesses)",
)
