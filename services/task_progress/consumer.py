"""behavior.events -> progress and grants, one transaction per fetched batch."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress import INFO, service
from services.task_progress import repository as repo
from services.task_progress.settings import Settings
from shared.events import BehaviorEvent, EngagementEvent
from shared.messaging import BatchHandler, Inbound, PoisonMessage, parse_model

TIERS = INFO.consumer("tiers")


class BehaviorHandler(BatchHandler[BehaviorEvent]):
    """No separate inbox: the behavior history's key (the behavior id) records what was
    applied, in the same transaction (`service.apply_behaviors`)."""

    name = INFO.consumer("behaviors").name  # topics: JIFEN_BEHAVIOR_TOPIC (INFO: the default)
    use_inbox = False

    def __init__(self, settings: Settings, topics: Sequence[str] | None = None) -> None:
        self.tz = settings.tz
        self.topics: Sequence[str] = list(topics or [settings.behavior_topic])

    def parse(self, record: ConsumerRecord) -> list[Inbound[BehaviorEvent]]:
        event = parse_model(record, BehaviorEvent, "behavior event")
        return [Inbound(message_id=event.behavior_id, value=event)]

    async def apply(self, session: AsyncSession, items: list[Inbound[BehaviorEvent]]) -> None:
        await service.apply_behaviors(session, [i.value for i in items], self.tz)


class TierHandler(BatchHandler[EngagementEvent]):
    """engagement.events -> the tier history the points multiplier reads (tier.changed only;
    a change is kept by (user, sequence), so replays change nothing)."""

    name, topics = TIERS.name, TIERS.topics
    use_inbox = False
    background = TIERS.background  # a rare event; nobody waits on it (see BatchHandler)

    def parse(self, record: ConsumerRecord) -> list[Inbound[EngagementEvent]]:
        event = parse_model(record, EngagementEvent, "engagement event")
        if event.type != "tier.changed":
            return []
        data = event.data
        sequence, multiplier = data.get("sequence"), data.get("multiplier", 1.0)
        if (
            not event.user_id
            or not isinstance(sequence, int)
            or isinstance(multiplier, bool)
            or not isinstance(multiplier, (int, float))
            or not 0 < multiplier <= 100
        ):
            raise PoisonMessage("tier.changed needs user_id, an int sequence and a multiplier")
        return [Inbound(event.event_id, event)]

    async def apply(self, session: AsyncSession, items: list[Inbound[EngagementEvent]]) -> None:
        await repo.insert_tier_changes(
            session,
            [
                {
                    "user_id": i.value.user_id,
                    "sequence": i.value.data["sequence"],
                    "tier": i.value.data.get("tier"),
                    "multiplier": i.value.data.get("multiplier", 1.0),
                    "effective_at": i.value.occurred_at,
                }
                for i in items
            ],
        )
