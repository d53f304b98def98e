"""What insights builds once per process besides the platform's parts."""

from __future__ import annotations

from dataclasses import dataclass

from services.insights.service import Recommender
from services.insights.upstream import Upstream


@dataclass
class Parts:
    recommender: Recommender
    upstream: Upstream  # the exchange, task_progress and the ledger, read by the sync workers

    async def close(self) -> None:
        await self.upstream.close()
