"""Every topic -> insights' rollups, one transaction per fetched batch (exactly once through
the inbox, ids namespaced by topic, for what is counted; see `parse` for what needs none)."""

from __future__ import annotations

from aiokafka import ConsumerRecord
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights import INFO, service
from services.insights.settings import Settings
from shared.events import (
    BehaviorEvent,
    EngagementEvent,
    ExchangeEvent,
    ExperimentExposure,
    LedgerEvent,
    NotifyEvent,
    ProgressEvent,
)
from shared.messaging import BatchHandler, Inbound
from shared.messaging.known import ByType, read_event

EVENTS = INFO.consumer("events")


class InsightsHandler(BatchHandler[BaseModel]):
    name, topics = EVENTS.name, EVENTS.topics
    use_inbox = True
    background = EVENTS.background  # nobody waits on it (see BatchHandler)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def parse(self, record: ConsumerRecord) -> list[Inbound[BaseModel]]:
        inbound = read_event(record, "insights", EVENTS.topics)
        if isinstance(inbound.value, EngagementEvent) and inbound.value.type != "tier.changed":
            return []  # of engagement's events, only tier changes are counted
        if isinstance(inbound.value, (BehaviorEvent, ProgressEvent)):
            # Behaviors and progress only add (day, user) pairs to a set (DAU) and merge task
            # periods forward (earliest day, completed or not): a repeat changes nothing, so
            # they claim no inbox row (two thirds of this consumer's). Ledger, exchange and
            # notification events are counted, and claim theirs.
            inbound.message_id = None
        return [inbound]

    async def apply(self, session: AsyncSession, items: list[Inbound[BaseModel]]) -> None:
        values = ByType(items)
        batch = service.Batch(
            behaviors=values[BehaviorEvent],
            progress=values[ProgressEvent],
            ledger=values[LedgerEvent],
            exchange=values[ExchangeEvent],
            engagement=values[EngagementEvent],
            notify=values[NotifyEvent],
            exposures=values[ExperimentExposure],
        )
        await service.apply_batch(session, batch, self.settings)
