"""Prometheus metrics every service exposes at /metrics."""

from __future__ import annotations

import time

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Histogram(
    "jifen_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
MESSAGES_CONSUMED = Counter(
    "jifen_messages_consumed_total",
    "Messages applied by a consumer",
    ["service", "consumer", "outcome"],
)
CONSUMER_BATCH_SECONDS = Histogram(
    "jifen_consumer_batch_seconds", "Time to apply one consumed batch", ["service", "consumer"]
)
CONSUMER_RESTARTS = Counter(
    "jifen_consumer_rejoins_total",
    "Consumers that left their group and joined it again: a join that brought no "
    "assignment in time, or a group found stalled",
    ["service", "consumer"],
)
CONSUMER_GROUP_REBUILDS = Counter(
    "jifen_consumer_group_rebuilds_total",
    "Consumer groups deleted and recreated with their committed offsets after joins kept "
    "bringing no assignment (a broker that lost track of the group)",
    ["service", "consumer"],
)
CONSUMER_RETRIES = Counter(
    "jifen_consumer_retries_total",
    "Transient failures retried by a consumer",
    ["service", "consumer"],
)
DEAD_LETTERS = Counter(
    "jifen_dead_letters_total", "Messages sent to a dead-letter topic", ["service", "topic"]
)
OUTBOX_PUBLISHED = Counter(
    "jifen_outbox_published_total",
    "Outbox rows published to Kafka, via the publisher on commit or the relay's sweep",
    ["service", "topic", "via"],
)
OUTBOX_BACKLOG = Gauge(
    "jifen_outbox_backlog",
    "Unpublished outbox messages old enough for the relay's sweep (at its last sweep)",
    ["service"],
)
RECONCILIATION_VIOLATIONS = Gauge(
    "jifen_reconciliation_violations",
    "Rows failing each reconciliation check at the last periodic run (at most 100 per check)",
    ["service", "check"],
)
RECONCILIATION_LAST_RUN = Gauge(
    "jifen_reconciliation_last_run_timestamp_seconds",
    "When the last periodic reconciliation finished (unix time)",
    ["service"],
)
RATE_LIMITED = Counter(
    "jifen_rate_limited_total",
    "Requests answered 429 by the rate limits, by the limit that applied (ingest_key, user, ip)",
    ["service", "kind"],
)
JWKS_FETCHES = Counter(
    "jifen_jwks_fetch_total",
    "Fetches of the identity provider's signing keys (JIFEN_JWT_JWKS_URL), by outcome (ok, "
    "error: the cached keys stay in use)",
    ["service", "outcome"],
)
JWKS_KEYS_AGE = Gauge(
    "jifen_jwks_keys_age_seconds",
    "Seconds since the signing keys in use were last fetched successfully (+Inf: never); "
    "growing past the refresh interval means the JWKS endpoint is failing",
    ["service"],
)
JWKS_KEYS = Gauge(
    "jifen_jwks_keys", "Signing keys cached from the identity provider's JWKS", ["service"]
)
JWT_REFUSED = Counter(
    "jifen_jwt_refused_total",
    "User tokens answered 401, by reason (token_expired, token_invalid_audience, ...)",
    ["service", "reason"],
)
RETENTION_PURGED = Counter(
    "jifen_retention_purged_total",
    "Rows past the retention period deleted (inbox, received behaviors, counters)",
    ["service", "table"],
)


class _ObserveRequests:
    """Request duration per route and status, as plain ASGI middleware.

    (Starlette's @app.middleware("http") wraps every request in task groups and memory
    streams; on this project's 2-core bench box that cost more than an empty endpoint.)
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def observe_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(self.service, scope["method"], path, str(status)).observe(
                time.perf_counter() - start
            )


def install_metrics(app: FastAPI, service: str) -> None:
    app.add_middleware(_ObserveRequests, service=service)

    @app.get("/metrics", include_in_schema=False)
    async def _metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def histogram_totals(exposition: str, name: str) -> tuple[float, float]:
    """(count, sum) of an unlabelled histogram in a /metrics page; zeros if absent."""
    totals = {"_count": 0.0, "_sum": 0.0}
    for family in text_string_to_metric_families(exposition):
        if family.name == name:
            for sample in family.samples:
                suffix = sample.name[len(name) :]
                if suffix in totals:
                    totals[suffix] = sample.value
    return totals["_count"], totals["_sum"]
