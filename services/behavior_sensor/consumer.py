"""Kafka intake (upstream.events and adapted sources) and the background processor."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncSession

from services.behavior_sensor import service
from services.behavior_sensor.adapters import ADAPTERS, Adapter
from services.behavior_sensor.domain import FarmingLimits
from services.behavior_sensor.enrichment import Enricher
from services.behavior_sensor.settings import Settings
from shared.db import Database
from shared.messaging import BatchHandler, Inbound, PoisonMessage
from shared.worker import PollingWorker

log = logging.getLogger(__name__)


class UpstreamHandler(BatchHandler):
    """Adapts each upstream topic's messages to envelopes, records and processes them.

    No separate inbox: the unique (source, event_id) of received_events is the inbox, written
    in the same transaction, so a re-read or a duplicate from upstream is recorded once. The
    new rows are enriched, screened and put in the outbox in that transaction too (the
    processor's work, done here because no caller is waiting on a Kafka message).
    """

    name = "behavior_sensor.upstream"
    use_inbox = False

    def __init__(
        self, enricher: Enricher, limits: FarmingLimits, adapters: dict[str, Adapter] | None = None
    ) -> None:
        self.adapters = adapters or ADAPTERS
        self.topics: Sequence[str] = list(self.adapters)
        self.enricher = enricher
        self.limits = limits
        self.enrichments: dict[tuple[str, str], dict[str, Any]] = {}

    def parse(self, record: ConsumerRecord) -> list[Inbound]:
        adapter = self.adapters.get(record.topic)
        if adapter is None:
            raise PoisonMessage(f"no adapter for topic {record.topic}")
        return [
            Inbound(message_id=f"{e.source}:{e.event_id}", value=e)
            for e in adapter.to_envelopes(record.value or b"")
        ]

    async def prepare(self, items: list[Inbound]) -> None:
        """Ask a remote enricher about the batch before its transaction opens."""
        self.enrichments = {}
        if self.enricher.remote and items:
            envelopes = [item.value for item in items]
            answers = await self.enricher.enrich([service.enrichment_input(e) for e in envelopes])
            self.enrichments = {
                (e.source, e.event_id): answer for e, answer in zip(envelopes, answers, strict=True)
            }

    async def apply(self, session: AsyncSession, items: list[Inbound]) -> None:
        by_channel: dict[str, list] = {}
        for item in items:
            by_channel.setdefault(item.record.topic if item.record else "kafka", []).append(
                item.value
            )
        for channel, envelopes in by_channel.items():
            await service.intake_and_process(
                session, envelopes, channel, self.enrichments, self.limits
            )


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
