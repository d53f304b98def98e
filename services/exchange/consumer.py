"""exchange's Kafka handlers: engagement.events -> the member tier read model a redemption of
a tier-only item checks.

Only tier.changed matters here; the other engagement events are skipped. Each event carries
the user's change count (`sequence`) and the ladder's order with its version, so events
applied late or twice never move a member back.
"""

from __future__ import annotations

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange import INFO
from services.exchange import repository as repo
from shared.events import EngagementEvent
from shared.messaging import BatchHandler, Inbound, PoisonMessage, parse_model

TIERS = INFO.consumer("tiers")


class TierHandler(BatchHandler[EngagementEvent]):
    name, topics = TIERS.name, TIERS.topics
    use_inbox = False  # sequence and version make every write idempotent
    background = TIERS.background  # nobody waits on it (see BatchHandler)

    def parse(self, record: ConsumerRecord) -> list[Inbound[EngagementEvent]]:
        event = parse_model(record, EngagementEvent, "engagement event")
        if event.type != "tier.changed":
            return []
        data = event.data
        if not event.user_id or not isinstance(data.get("sequence"), int):
            raise PoisonMessage("tier.changed without user_id or sequence")
        return [Inbound(event.event_id, event)]

    async def apply(self, session: AsyncSession, items: list[Inbound[EngagementEvent]]) -> None:
        newest: dict[str, dict[str, object]] = {}
        sequences: dict[str, int] = {}  # the sequence of each user's newest row
        ladder: tuple[int, list[dict[str, object]]] | None = None
        for item in items:
            event: EngagementEvent = item.value
            data = event.data
            user = str(event.user_id)
            sequence: int = data["sequence"]  # an int: `parse` refused anything else
            if user not in sequences or sequences[user] < sequence:
                sequences[user] = sequence
                newest[user] = {"user_id": user, "tier": data.get("tier"), "sequence": sequence}
            version = int(data.get("ladder_version", 0))
            steps = data.get("ladder_tiers")
            if isinstance(steps, list) and (ladder is None or ladder[0] <= version):
                ladder = (version, steps)
        if ladder is not None:
            await repo.save_ladder(session, *ladder)
        await repo.save_member_tiers(session, list(newest.values()))
