"""The reference data insights copies, read through the typed clients of the services that own
it (the exchange's catalog, task_progress's rules, the ledger's points expiring soon), with
insights's own credential (JIFEN_SERVICE_TOKEN: exchange:catalog, tasks:rules and
ledger:expiring open these reads and nothing else)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.exchange.client import ExchangeClient
from services.insights.settings import Settings
from services.rewards_ledger.client import LedgerClient
from services.task_progress.client import TaskClient
from shared.errors import DomainError

# What a failed copy raises: no definite answer or a refusal (DomainError, Unavailable
# included), and a page not shaped as expected.
READ_ERRORS = (DomainError, KeyError, ValueError)


class Upstream:
    def __init__(self, settings: Settings) -> None:
        token, timeout = settings.outbound_token, settings.upstream_timeout_s
        self.exchange = ExchangeClient(settings.exchange_url, token, timeout)
        self.tasks = TaskClient(settings.task_progress_url, token, timeout)
        self.ledger = LedgerClient(settings.ledger_url, token, timeout)

    async def close(self) -> None:
        for client in (self.exchange, self.tasks, self.ledger):
            await client.close()

    async def catalog(self) -> list[dict[str, Any]]:
        return await self.exchange.catalog()

    async def rules(self) -> list[dict[str, Any]]:
        return await self.tasks.rules()

    async def expiring(self, start: datetime, end: datetime) -> list[tuple[str, datetime, int]]:
        """Every (user_id, expires_at, points) expiring in [start, end), page by page."""
        lots, cursor = await self.ledger.expiring(start, end)
        while cursor is not None:
            page, cursor = await self.ledger.expiring(start, end, cursor)
            lots.extend(page)
        return lots
