"""What the exchange's routes and workers share (built by `main.build_parts`)."""

from __future__ import annotations

from dataclasses import dataclass

from services.exchange.service import Exchange, QuickOptions


@dataclass
class Parts:
    exchange: Exchange  # the redemption saga, cancellation and the recovery loop's step
    quick: QuickOptions  # quick options, with the recommender and the task rules they read

    async def close(self) -> None:
        await self.exchange.batcher.drain()  # redemptions under way finish before the client
        await self.exchange.ledger.close()
        await self.quick.close()
