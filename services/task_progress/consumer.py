"""behavior.events -> progress and grants, one transaction per fetched batch."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import ConsumerRecord
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress import service
from services.task_progress.settings import Settings
from shared.events import BehaviorEvent
from shared.kafka import Inbound, PoisonMessage


class BehaviorHandler:
    name = "task_progress.behaviors"
    use_inbox = True

    def __init__(self, settings: Settings, topics: Sequence[str] | None = None) -> None:
        self.tz = settings.tz
        self.topics: Sequence[str] = list(topics or [settings.behavior_topic])

    def parse(self, record: ConsumerRecord) -> list[Inbound]:
        try:
            event = BehaviorEvent.model_validate_json(record.value or b"")
        except ValidationError as exc:
            raise PoisonMessage(f"invalid behavior event: {exc.errors(include_url=False)}") from exc
        return [Inbound(message_id=event.behavior_id, value=event)]

    async def apply(self, session: AsyncSession, items: list[Inbound]) -> None:
        await service.apply_behaviors(session, [i.value for i in items], self.tz)
