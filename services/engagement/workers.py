"""engagement's background loops: closing ended periods (and the daily rank snapshots), and
re-evaluating tiers whose term is over. Both are safe in every replica (SKIP LOCKED, or a
claimed row per snapshot day)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from services.engagement import service
from services.engagement.index import BoardIndex
from services.engagement.settings import Settings
from shared.db import Database
from shared.worker import PollingWorker

log = logging.getLogger(__name__)


class PeriodCloser(PollingWorker):
    """Closes one ended period per transaction, then takes a due rank snapshot.

    `before_commit` is a seam for crash tests: it runs inside the close's transaction, after
    every row is written and before the commit."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        index: BoardIndex | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(
            poll_s=settings.board_close_interval_s,
            full_batch=1,
            backoff_cap_s=settings.retry_backoff_max_s,
        )
        self.settings = settings
        self.db = db
        self.index = index
        self.before_commit = before_commit

    async def close_once(self, now: datetime | None = None) -> tuple[str, str] | None:
        now = now or datetime.now(UTC)
        async with self.db.transaction() as session:
            closed = await service.close_one(session, self.settings, now)
            if closed is not None and self.before_commit is not None:
                self.before_commit()
        if closed is not None and self.index is not None:
            try:  # served from its standings from now on: the set is no longer needed
                await self.index.drop(*closed)
            except Exception:
                log.warning("could not drop the index of closed period %s", closed)
        return closed

    async def snapshot_once(self, now: datetime | None = None) -> int:
        async with self.db.transaction() as session:
            return await service.snapshot_one(session, self.settings, now or datetime.now(UTC))

    async def step(self) -> int:
        if await self.close_once() is not None:
            return 1  # more may be due: go again at once
        return 1 if await self.snapshot_once() >= 0 else 0


class TierSweeper(PollingWorker):
    """Evaluates tiers whose term (and the downgrade grace) is over."""

    def __init__(self, settings: Settings, db: Database) -> None:
        super().__init__(
            poll_s=settings.tier_sweep_interval_s,
            full_batch=settings.sweep_batch,
            backoff_cap_s=settings.retry_backoff_max_s,
        )
        self.settings = settings
        self.db = db

    async def sweep_once(self, now: datetime | None = None) -> int:
        async with self.db.transaction() as session:
            return await service.evaluate_due_tiers(
                session, self.settings, now or datetime.now(UTC)
            )

    async def step(self) -> int:
        return await self.sweep_once()
