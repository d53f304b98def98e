"""rewards.grants -> credits. One transaction per fetched batch; grant_id is the inbox id."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger import service
from services.rewards_ledger.settings import Settings
from shared.db import Database
from shared.events import GrantCommand
from shared.messaging import BatchHandler, Inbound, parse_model
from shared.worker import PollingWorker

log = logging.getLogger(__name__)


class GrantHandler(BatchHandler):
    name = "rewards_ledger.grants"
    use_inbox = True

    def __init__(self, settings: Settings, topics: Sequence[str] | None = None) -> None:
        self.settings = settings
        self.topics: Sequence[str] = list(topics or [settings.grants_topic])

    def parse(self, record: ConsumerRecord) -> list[Inbound]:
        grant = parse_model(record, GrantCommand, "grant")
        return [Inbound(message_id=grant.grant_id, value=grant)]

    async def apply(self, session: AsyncSession, items: list[Inbound]) -> None:
        days = self.settings.default_points_validity_days
        await service.credit(session, [service.grant_to_credit(i.value, days) for i in items])


class ExpirySweeper(PollingWorker):
    """Expires past-due lots in batches; safe to run in every replica (SKIP LOCKED)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        super().__init__(
            poll_s=settings.expiry_sweep_interval_s,
            full_batch=sys.maxsize,  # sweep_once already loops until nothing is due
            backoff_cap_s=settings.retry_backoff_max_s,
        )
        self.settings = settings
        self.db = db

    async def step(self) -> int:
        return await self.sweep_once()

    async def sweep_once(self, now: datetime | None = None) -> int:
        """Expire everything due by `now`; returns how many lots expired."""
        expired_total = 0
        while True:
            async with self.db.transaction() as session:
                expired = await service.sweep_expired(
                    session, now or datetime.now(UTC), self.settings.expiry_sweep_batch
                )
            if expired == 0:
                return expired_total
            expired_total += expired
