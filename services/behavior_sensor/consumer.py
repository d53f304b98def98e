"""Kafka intake (upstream.events and adapted sources) and the background processor."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncSession

from services.behavior_sensor import service
from services.behavior_sensor.adapters import ADAPTERS, Adapter
from services.behavior_sensor.domain import FarmingLimits
from services.behavior_sensor.enrichment import Enricher
from services.behavior_sensor.settings import Settings
from shared.db import Database
from shared.kafka import Inbound, PoisonMessage
from shared.worker import PollingWorker

log = logging.getLogger(__name__)


class UpstreamHandler:
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

    def parse(self, record: ConsumerRecord) -> list[Inbound]:
        adapter = self.adapters.get(record.topic)
        if adapter is None:
            raise PoisonMessage(f"no adapter for topic {record.topic}")
        return [
            Inbound(message_id=f"{e.source}:{e.event_id}", value=e)
            for e in adapter.to_envelopes(record.value or b"")
        ]

    async def apply(self, session: AsyncSession, items: list[Inbound]) -> None:
        by_channel: dict[str, list] = {}
        for item in items:
            by_channel.setdefault(item.record.topic if item.record else "kafka", []).append(
                item.value
            )
        for channel, envelopes in by_channel.items():
            await service.intake_and_process(
                session, envelopes, channel, self.enricher, self.limits
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
        async with self.db.transaction() as session:
            return await service.process_pending(
                session, self.enricher, self.limits, self.settings.processor_batch_size
            )

    async def on_exit(self) -> None:
        await self.enricher.aclose()
