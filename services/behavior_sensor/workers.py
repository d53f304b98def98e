"""The sensor's background loop: the processor that turns received behaviors into published
(or diverted) ones."""

from __future__ import annotations

from services.behavior_sensor import service
from services.behavior_sensor.domain import FarmingLimits
from services.behavior_sensor.enrichment import Enricher
from services.behavior_sensor.settings import Settings
from shared.db import Database
from shared.worker import PollingWorker


def farming_limits(settings: Settings) -> FarmingLimits:
    return FarmingLimits(
        settings.farming_default_limit,
        settings.farming_action_limits,
        settings.farming_window_seconds,
    )


class BehaviorProcessor(PollingWorker):
    """Turns received behaviors into published (or diverted) ones. Replica-safe (SKIP LOCKED)."""

    def __init__(self, settings: Settings, db: Database, enricher: Enricher) -> None:
        super().__init__(
            poll_s=settings.processor_poll_ms / 1000,
            full_batch=settings.processor_batch_size,
            backoff_cap_s=settings.retry_backoff_max_s,
            linger_s=settings.worker_linger_ms / 1000,
        )
        self.settings = settings
        self.db = db
        self.enricher = enricher
        self.limits = farming_limits(settings)

    async def step(self) -> int:
        batch = self.settings.processor_batch_size
        if not self.enricher.remote:
            async with self.db.transaction() as session:
                return await service.process_pending(session, self.limits, batch)
        # A remote enricher is asked between two units of work, never while the rows are
        # locked: read the batch, ask, then claim what no other replica took meanwhile (a row
        # is at most enriched twice) and process it. What this step processed decides whether
        # the next runs at once, so rows another replica holds are not asked about in a loop.
        async with self.db.read_only() as session:
            waiting = await service.waiting(session, batch)
        if not waiting:
            return 0
        enrichments = await service.enrich(self.enricher, waiting)
        async with self.db.transaction() as session:
            return await service.process_enriched(session, enrichments, self.limits)

    async def on_exit(self) -> None:
        await self.enricher.aclose()
