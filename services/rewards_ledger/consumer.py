"""rewards.grants -> credits and clawbacks, one transaction per fetched batch (the inbox id is
the grant or clawback id); the sweeps that expire and release lots."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from aiokafka import ConsumerRecord
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger import service
from services.rewards_ledger.settings import Settings
from shared.db import Database
from shared.events import REWARD_COMMAND, GrantCommand
from shared.messaging import BatchHandler, Inbound, PoisonMessage
from shared.worker import PollingWorker

log = logging.getLogger(__name__)


class GrantHandler(BatchHandler):
    """No separate inbox: a grant's lot id comes from its idempotency key, so the lot's key
    records which grants were credited, in the same transaction; a clawback raises its lot's
    target (never lowers it) and only what is left to reverse is applied, so a repeat of
    either changes nothing (`service.apply_rewards`)."""

    name = "rewards_ledger.grants"
    use_inbox = False

    def __init__(self, settings: Settings, topics: Sequence[str] | None = None) -> None:
        self.settings = settings
        self.topics: Sequence[str] = list(topics or [settings.grants_topic])

    def parse(self, record: ConsumerRecord) -> list[Inbound]:
        try:
            command = REWARD_COMMAND.validate_json(record.value or b"")
        except ValidationError as exc:
            raise PoisonMessage(
                f"invalid grant or clawback: {exc.errors(include_url=False)}"
            ) from exc
        message_id = command.grant_id if isinstance(command, GrantCommand) else command.clawback_id
        return [Inbound(message_id=message_id, value=command)]

    async def apply(self, session: AsyncSession, items: list[Inbound]) -> None:
        await service.apply_rewards(
            session, [i.value for i in items], self.settings.default_points_validity_days
        )


Sweep = Callable[[AsyncSession, datetime, int], Awaitable[int]]


class _LotSweeper(PollingWorker):
    """Moves due lots in batches of accounts; safe to run in every replica (SKIP LOCKED)."""

    def __init__(self, settings: Settings, db: Database, sweep: Sweep) -> None:
        super().__init__(
            poll_s=settings.expiry_sweep_interval_s,
            full_batch=sys.maxsize,  # sweep_once already loops until nothing is due
            backoff_cap_s=settings.retry_backoff_max_s,
        )
        self.settings = settings
        self.db = db
        self._sweep = sweep

    async def step(self) -> int:
        return await self.sweep_once()

    async def sweep_once(self, now: datetime | None = None) -> int:
        """Move everything due by `now` (the clock tests move); returns how many lots moved."""
        moved_total = 0
        while True:
            async with self.db.transaction() as session:
                moved = await self._sweep(
                    session, now or datetime.now(UTC), self.settings.expiry_sweep_batch
                )
            if moved == 0:
                return moved_total
            moved_total += moved


class ExpirySweeper(_LotSweeper):
    """Expires past-due lots."""

    def __init__(self, settings: Settings, db: Database) -> None:
        super().__init__(settings, db, service.sweep_expired)


class ReleaseSweeper(_LotSweeper):
    """Makes pending lots available once their available_at has come (each exactly once)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        super().__init__(settings, db, service.sweep_released)
