"""The recovery loop's step (run by `workers.RecoveryWorker`): finish what requests left
unfinished — retry unconfirmed debits, compensate them past the deadline, retry refunds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from services.exchange import repository as repo
from services.exchange.repository import Redemption
from services.exchange.service.cancellation import Cancellation
from services.exchange.service.saga import Saga


class Exchange(Saga, Cancellation):
    """Redemption saga (`saga.py`), cancellation (`cancellation.py`) and the recovery loop's
    step, over the finishing floor (`finishing.py`)."""

    async def recover_once(self) -> int:
        """Finish every unfinished redemption that is due; returns how many were tried."""
        now = datetime.now(UTC)
        async with self.db.transaction() as session:
            rows = await repo.claim_unfinished(
                session, now, now + self.lease, self.settings.recovery_batch
            )
        if not rows:
            return 0
        gate = asyncio.Semaphore(16)

        async def settle(row: Redemption) -> None:
            async with gate:
                if row.status == "cancelling":
                    await self._settle_refund(row)
                else:
                    await self._compensate(row)

        overdue = (now - timedelta(seconds=self.settings.pending_deadline_s)).timestamp()
        retry = [r for r in rows if r.status == "pending" and r.created_at.timestamp() > overdue]
        others = [r for r in rows if r.status != "pending" or r.created_at.timestamp() <= overdue]
        await asyncio.gather(self._settle_debits(retry), *(settle(row) for row in others))
        return len(rows)
