"""behavior.events -> progress and grants, one transaction per fetched batch."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress import service
from services.task_progress.settings import Settings
from shared.events import BehaviorEvent
from shared.messaging import BatchHandler, Inbound, parse_model


class BehaviorHandler(BatchHandler):
    name = "task_progress.behaviors"
    use_inbox = True

    def __init__(self, settings: Settings, topics: Sequence[str] | None = None) -> None:
        self.tz = settings.tz
        self.topics: Sequence[str] = list(topics or [settings.behavior_topic])

    def parse(self, record: ConsumerRecord) -> list[Inbound]:
        event = parse_model(record, BehaviorEvent, "behavior event")
        return [Inbound(message_id=event.behavior_id, value=event)]

    async def apply(self, session: AsyncSession, items: list[Inbound]) -> None:
        await service.apply_behaviors(session, [i.value for i in items], self.tz)
