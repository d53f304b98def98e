"""The enrichment seam: add context (user tier, device risk, ...) to behaviors before publishing.

Enrichment runs in the background processor or the Kafka intake, never in an upstream's
request path, and never inside a transaction: it is asked first, and its answers are applied
in the transaction that follows. It is
best-effort: after its retries a failing enricher yields {"status": "unavailable"} and the
behavior is published anyway, so a slow profile service can never stall points.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from services.behavior_sensor.metrics import ENRICHMENT_FAILURES
from shared.client import ServiceClient

log = logging.getLogger(__name__)


class Enricher(Protocol):
    # True when enriching calls another service: it then happens before any transaction
    # opens, so no row lock is held while waiting on the network.
    remote: bool

    async def enrich(self, behaviors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return one dict of extra context per behavior, in order."""
        ...

    async def aclose(self) -> None: ...


class NoopEnricher:
    remote = False

    async def enrich(self, behaviors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{} for _ in behaviors]

    async def aclose(self) -> None:
        return None


class HttpEnricher:
    """POST {"behaviors": [...]} to a URL; expects {"results": [{...}, ...]} in the same order.
    Asking is a read: an answer that did not come (timeout, 5xx) is asked again `retries`
    times; a refusal or a malformed answer is not."""

    remote = True

    def __init__(self, url: str, *, timeout_s: float = 0.5, retries: int = 2) -> None:
        self.client = ServiceClient("enricher", url, "", timeout_s, retries=retries)

    async def enrich(self, behaviors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not behaviors:
            return []
        outcome = await self.client.post("", {"behaviors": behaviors}, idempotent=True)
        results = outcome.body.get("results") if isinstance(outcome.body, dict) else None
        if outcome.ok and isinstance(results, list) and len(results) == len(behaviors):
            return [r if isinstance(r, dict) else {} for r in results]
        ENRICHMENT_FAILURES.inc()
        problem = outcome.describe() if not outcome.ok else "a different number of results"
        log.warning("enrichment unavailable: %s", problem)
        return [{"status": "unavailable"} for _ in behaviors]

    async def aclose(self) -> None:
        await self.client.close()


def make_enricher(url: str, timeout_s: float, retries: int) -> Enricher:
    return HttpEnricher(url, timeout_s=timeout_s, retries=retries) if url else NoopEnricher()
