"""rewards.grants -> credits and clawbacks, one transaction per fetched batch (the inbox id is
the grant or clawback id)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka import ConsumerRecord
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger import INFO, service
from services.rewards_ledger.settings import Settings
from shared.events import REWARD_COMMAND, GrantCommand, RewardCommand
from shared.messaging import BatchHandler, Inbound, PoisonMessage

log = logging.getLogger(__name__)


class GrantHandler(BatchHandler[RewardCommand]):
    """No separate inbox: a grant's lot id comes from its idempotency key, so the lot's key
    records which grants were credited, in the same transaction; a clawback raises its lot's
    target (never lowers it) and only what is left to reverse is applied, so a repeat of
    either changes nothing (`service.apply_rewards`)."""

    name = INFO.consumer("grants").name  # topics: JIFEN_GRANTS_TOPIC (INFO: the default)
    use_inbox = False

    def __init__(self, settings: Settings, topics: Sequence[str] | None = None) -> None:
        self.settings = settings
        self.topics: Sequence[str] = list(topics or [settings.grants_topic])

    def parse(self, record: ConsumerRecord) -> list[Inbound[RewardCommand]]:
        try:
            command = REWARD_COMMAND.validate_json(record.value or b"")
        except ValidationError as exc:
            raise PoisonMessage(
                f"invalid grant or clawback: {exc.errors(include_url=False)}"
            ) from exc
        message_id = command.grant_id if isinstance(command, GrantCommand) else command.clawback_id
        return [Inbound(message_id=message_id, value=command)]

    async def apply(self, session: AsyncSession, items: list[Inbound[RewardCommand]]) -> None:
        await service.apply_rewards(
            session,
            [i.value for i in items],
            self.settings.points_validity,
            tz=self.settings.tz,
        )
