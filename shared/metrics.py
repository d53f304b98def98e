"""Prometheus metrics every service exposes at /metrics."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

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
CONSUMER_RETRIES = Counter(
    "jifen_consumer_retries_total",
    "Transient failures retried by a consumer",
    ["service", "consumer"],
)
DEAD_LETTERS = Counter(
    "jifen_dead_letters_total", "Messages sent to a dead-letter topic", ["service", "topic"]
)
OUTBOX_PUBLISHED = Counter(
    "jifen_outbox_published_total", "Outbox rows published to Kafka", ["service", "topic"]
)
OUTBOX_BACKLOG = Gauge(
    "jifen_outbox_backlog", "Unpublished outbox rows seen by the relay", ["service"]
)
EVENTS_INGESTED = Counter(
    "jifen_behavior_events_total", "Behavior events by outcome", ["source", "outcome"]
)
EVENTS_DIVERTED = Counter(
    "jifen_behavior_diverted_total",
    "Behavior events diverted by the anti-farming limit",
    ["action"],
)
GRANTS_ISSUED = Counter("jifen_grants_total", "Grants issued by task completions", ["task_id"])
POINTS_MOVED = Counter("jifen_points_total", "Points moved by the ledger", ["kind"])
REDEMPTIONS = Counter(
    "jifen_redemptions_total",
    "Redemptions finished, by outcome (completed, cancelled, or the failure code)",
    ["outcome"],
)
REDEMPTIONS_UNCONFIRMED = Counter(
    "jifen_redemption_ledger_unconfirmed_total",
    "Ledger calls (debits or refunds) that got no definite answer and were left to recovery",
    ["operation"],
)


def install_metrics(app: FastAPI, service: str) -> None:
    @app.middleware("http")
    async def _observe(request: Request, call_next):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        HTTP_REQUESTS.labels(service, request.method, path, str(response.status_code)).observe(
            time.perf_counter() - start
        )
        return response

    @app.get("/metrics", include_in_schema=False)
    async def _metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
