"""The topics engagement reads -> scores, counters, flags, tiers and badges, one transaction
per fetched batch (exactly once through the inbox; ids are namespaced by topic; progress
events need none, see `parse`)."""

from __future__ import annotations

import json

from aiokafka import ConsumerRecord
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import INFO, service
from services.engagement.leaderboards import NameCache
from services.engagement.names import PROFILE_UPDATED
from services.engagement.settings import Settings
from services.engagement.workers import IndexWriter
from shared.db import after_commit
from shared.events import (
    BEHAVIOR_DIVERTED,
    BehaviorEvent,
    ExchangeEvent,
    LedgerEvent,
    ProgressEvent,
)
from shared.messaging import BatchHandler, Inbound, PoisonMessage, parse_model
from shared.messaging.known import ByType, read_event

EVENTS = INFO.consumer("events")
# An event of the topics read, or a diverted behavior with the reason it was diverted.
EngagementInput = BaseModel | tuple[BehaviorEvent, str]


class EngagementHandler(BatchHandler[EngagementInput]):
    name, topics = EVENTS.name, EVENTS.topics
    use_inbox = True

    def __init__(
        self, settings: Settings, writer: IndexWriter, names: NameCache | None = None
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.names = names  # this process's display names, refreshed when a profile changes

    def parse(self, record: ConsumerRecord) -> list[Inbound[EngagementInput]]:
        if record.topic == BEHAVIOR_DIVERTED:
            diverted = parse_model(record, BehaviorEvent, "diverted behavior")
            try:
                reason = str(json.loads(record.value or b"{}").get("reason", ""))
            except ValueError as exc:  # parse_model accepted it, so this cannot happen
                raise PoisonMessage(str(exc)) from exc
            return [Inbound(f"diverted:{diverted.behavior_id}", (diverted, reason))]
        event = read_event(record, "engagement", EVENTS.topics)
        # Only check-ins count here among progress events, as the best streak: a maximum,
        # which a repeat cannot raise, so they claim no inbox row (a third of this consumer's).
        claim = None if isinstance(event.value, ProgressEvent) else event.message_id
        return [Inbound(claim, event.value)]

    async def apply(self, session: AsyncSession, items: list[Inbound[EngagementInput]]) -> None:
        values = ByType(items)
        diverted: list[tuple[BehaviorEvent, str]] = values[tuple]
        batch = service.Batch(
            ledger=values[LedgerEvent],
            behaviors=values[BehaviorEvent],
            progress=values[ProgressEvent],
            exchange=values[ExchangeEvent],
            diverted=[behavior for behavior, _ in diverted],
            reasons={behavior.behavior_id: reason for behavior, reason in diverted},
        )
        await service.apply_batch(session, batch, self.settings, self.writer)
        changed = [b.user_id for b in batch.behaviors if b.action == PROFILE_UPDATED]
        if changed and self.names is not None:
            names = self.names
            after_commit(session, lambda: names.forget(changed))
