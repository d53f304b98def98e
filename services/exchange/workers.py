"""exchange's background loops: the recovery loop, which finishes what a request could not
(unconfirmed debits and refunds)."""

from __future__ import annotations

from services.exchange.service import Exchange
from shared.worker import PollingWorker


class RecoveryWorker(PollingWorker):
    """Retries pending redemptions and unconfirmed cancellations with their original keys.

    Safe in every replica: each batch is leased with FOR UPDATE SKIP LOCKED.
    """

    def __init__(self, exchange: Exchange) -> None:
        settings = exchange.settings
        super().__init__(
            poll_s=settings.recovery_interval_s,
            full_batch=settings.recovery_batch,
            backoff_cap_s=settings.retry_backoff_max_s,
        )
        self.exchange = exchange

    async def step(self) -> int:
        return await self.exchange.recover_once()
