"""Every topic -> insights' rollups, one transaction per fetched batch (exactly once through
the inbox; ids are namespaced by topic)."""

from __future__ import annotations

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights import service
from services.insights.settings import Settings
from shared.events import (
    BEHAVIOR_EVENTS,
    ENGAGEMENT_EVENTS,
    EXCHANGE_EVENTS,
    EXPERIMENT_EXPOSURES,
    LEDGER_EVENTS,
    NOTIFY_EVENTS,
    PROGRESS_EVENTS,
    BehaviorEvent,
    EngagementEvent,
    ExchangeEvent,
    ExperimentExposure,
    LedgerEvent,
    NotifyEvent,
    ProgressEvent,
)
from shared.messaging import BatchHandler, Inbound, PoisonMessage, parse_model

TOPICS = (
    BEHAVIOR_EVENTS,
    PROGRESS_EVENTS,
    LEDGER_EVENTS,
    EXCHANGE_EVENTS,
    ENGAGEMENT_EVENTS,
    NOTIFY_EVENTS,
    EXPERIMENT_EXPOSURES,
)


class InsightsHandler(BatchHandler):
    name = "insights.events"
    topics = TOPICS
    use_inbox = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def parse(self, record: ConsumerRecord) -> list[Inbound]:
        topic = record.topic
        if topic == BEHAVIOR_EVENTS:
            b = parse_model(record, BehaviorEvent, "behavior event")
            return [Inbound(f"behavior:{b.behavior_id}", b)]
        if topic == LEDGER_EVENTS:
            e = parse_model(record, LedgerEvent, "ledger event")
            return [Inbound(f"ledger:{e.entry_id}", e)]
        if topic == PROGRESS_EVENTS:
            p = parse_model(record, ProgressEvent, "progress event")
            return [Inbound(f"progress:{p.event_id}", p)]
        if topic == EXCHANGE_EVENTS:
            x = parse_model(record, ExchangeEvent, "exchange event")
            return [Inbound(f"exchange:{x.redemption_id}:{x.type}", x)]
        if topic == ENGAGEMENT_EVENTS:
            g = parse_model(record, EngagementEvent, "engagement event")
            if g.type != "tier.changed":
                return []
            return [Inbound(f"engagement:{g.event_id}", g)]
        if topic == NOTIFY_EVENTS:
            n = parse_model(record, NotifyEvent, "notify event")
            return [Inbound(f"notify:{n.event_id}", n)]
        if topic == EXPERIMENT_EXPOSURES:
            x2 = parse_model(record, ExperimentExposure, "experiment exposure")
            return [Inbound(f"exposure:{x2.event_id}", x2)]
        raise PoisonMessage(f"insights does not read {topic}")

    async def apply(self, session: AsyncSession, items: list[Inbound]) -> None:
        batch = service.Batch()
        for item in items:
            value = item.value
            if isinstance(value, BehaviorEvent):
                batch.behaviors.append(value)
            elif isinstance(value, LedgerEvent):
                batch.ledger.append(value)
            elif isinstance(value, ProgressEvent):
                batch.progress.append(value)
            elif isinstance(value, ExchangeEvent):
                batch.exchange.append(value)
            elif isinstance(value, EngagementEvent):
                batch.engagement.append(value)
            elif isinstance(value, NotifyEvent):
                batch.notify.append(value)
            else:
                batch.exposures.append(value)
        await service.apply_batch(session, batch, self.settings)
