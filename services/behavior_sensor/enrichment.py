"""The enrichment seam: add context (user tier, device risk, ...) to behaviors before publishing.

Enrichment runs in the background processor or the Kafka intake, never in an upstream's
request path, and never inside a transaction: it is asked first, and its answers are applied
in the transaction that follows. It is
best-effort: after its retries a failing enricher yields {"status": "unavailable"} and the
behavior is published anyway, so a slow profile service can never stall points.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import httpx

from services.behavior_sensor.metrics import ENRICHMENT_FAILURES

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
    """POST {"behaviors": [...]} to a URL; expects {"results": [{...}, ...]} in the same order."""

    remote = True

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 0.5,
        retries: int = 2,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.retries = retries
        self.client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_s))

    async def enrich(self, behaviors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not behaviors:
            return []
        last_error: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                response = await self.client.post(self.url, json={"behaviors": behaviors})
                if response.status_code >= 500:
                    raise httpx.HTTPStatusError(
                        "server error", request=response.request, response=response
                    )
                response.raise_for_status()
                results = response.json().get("results")
                if not isinstance(results, list) or len(results) != len(behaviors):
                    raise ValueError("enricher answered a different number of results")
                return [r if isinstance(r, dict) else {} for r in results]
            except (httpx.HTTPError, ValueError) as exc:
                last_error = exc
                if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code < 500:
                    break  # the enricher rejected the request: retrying will not help
                if attempt < self.retries:
                    await asyncio.sleep(0.05 * 2**attempt)
        ENRICHMENT_FAILURES.inc()
        log.warning("enrichment unavailable: %s", last_error)
        return [{"status": "unavailable"} for _ in behaviors]

    async def aclose(self) -> None:
        await self.client.aclose()


def make_enricher(url: str, timeout_s: float, retries: int) -> Enricher:
    return HttpEnricher(url, timeout_s=timeout_s, retries=retries) if url else NoopEnricher()
