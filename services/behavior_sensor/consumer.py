"""Kafka intake: upstream.events and the adapted sources (the processor is in workers.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncSession

from services.behavior_sensor import INFO, service
from services.behavior_sensor.adapters import ADAPTERS, Adapter
from services.behavior_sensor.domain import FarmingLimits
from services.behavior_sensor.enrichment import Enricher
from shared import tracing
from shared.events import BehaviorEnvelope
from shared.messaging import BatchHandler, Inbound, PoisonMessage

log = logging.getLogger(__name__)


class UpstreamHandler(BatchHandler[BehaviorEnvelope]):
    """Adapts each upstream topic's messages to envelopes, records and processes them.

    No separate inbox: the unique (source, event_id) of received_events is the inbox, written
    in the same transaction, so a re-read or a duplicate from upstream is recorded once. The
    new rows are enriched, screened and put in the outbox in that transaction too (the
    processor's work, done here because no caller is waiting on a Kafka message).
    """

    name = INFO.consumer("upstream").name  # topics: one per adapter (INFO names the default)
    use_inbox = False

    def __init__(
        self, enricher: Enricher, limits: FarmingLimits, adapters: dict[str, Adapter] | None = None
    ) -> None:
        self.adapters = adapters or ADAPTERS
        self.topics: Sequence[str] = list(self.adapters)
        self.enricher = enricher
        self.limits = limits
        self.enrichments: dict[tuple[str, str], dict[str, Any]] = {}

    def parse(self, record: ConsumerRecord) -> list[Inbound[BehaviorEnvelope]]:
        adapter = self.adapters.get(record.topic)
        if adapter is None:
            raise PoisonMessage(f"no adapter for topic {record.topic}")
        return [
            Inbound(message_id=f"{e.source}:{e.event_id}", value=e)
            for e in adapter.to_envelopes(record.value or b"")
        ]

    async def prepare(self, items: list[Inbound[BehaviorEnvelope]]) -> None:
        """Ask a remote enricher about the batch before its transaction opens."""
        self.enrichments = {}
        if self.enricher.remote and items:
            envelopes = [item.value for item in items]
            answers = await self.enricher.enrich([service.enrichment_input(e) for e in envelopes])
            self.enrichments = {
                (e.source, e.event_id): answer for e, answer in zip(envelopes, answers, strict=True)
            }

    async def apply(self, session: AsyncSession, items: list[Inbound[BehaviorEnvelope]]) -> None:
        traces = tracing.batch()  # None unless a record of the batch carries a trace
        by_channel: dict[str, list] = {}
        traced: dict[str, list[str | None]] = {}
        for item in items:
            channel = item.record.topic if item.record else "kafka"
            by_channel.setdefault(channel, []).append(item.value)
            if traces is not None:
                traceparent = traces.of_record(item.record) if item.record else None
                traced.setdefault(channel, []).append(traceparent)
        for channel, envelopes in by_channel.items():
            await service.intake_and_process(
                session, envelopes, channel, self.enrichments, self.limits, traced.get(channel)
            )
