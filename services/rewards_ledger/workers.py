"""The ledger's background loops: the sweeps that expire past-due lots, release pending ones
and void holds past their deadline, in every replica."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger import service
from services.rewards_ledger.settings import Settings
from shared.db import Database
from shared.worker import PollingWorker

Sweep = Callable[[AsyncSession, datetime, int], Awaitable[int]]


class _LotSweeper(PollingWorker):
    """Moves due lots in batches of accounts; safe to run in every replica (SKIP LOCKED)."""

    def __init__(
        self, settings: Settings, db: Database, sweep: Sweep, poll_s: float | None = None
    ) -> None:
        super().__init__(
            poll_s=poll_s or settings.expiry_sweep_interval_s,
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


class HoldSweeper(_LotSweeper):
    """Voids holds past their deadline (each exactly once), every hold_sweep_interval_s."""

    def __init__(self, settings: Settings, db: Database) -> None:
        super().__init__(
            settings, db, service.sweep_expired_holds, poll_s=settings.hold_sweep_interval_s
        )
