"""What insights reads of other services, through the typed clients of the services that own
it, with insights's own credential (JIFEN_SERVICE_TOKEN): the reference data it copies (the
exchange's catalog, task_progress's rules, the ledger's points expiring soon: exchange:catalog,
tasks:rules, ledger:expiring) and, for the business health, both reconciliations
(ledger:overview, exchange:read) and the suite's consumer lag (from the broker)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from services.exchange.client import ExchangeClient
from services.insights.settings import Settings
from services.rewards_ledger.client import LedgerClient
from services.suite import CONSUMER_GROUPS
from services.task_progress.client import TaskClient
from shared.errors import DomainError
from shared.messaging.lag import consumer_lag_by_topic

# What a failed copy raises: no definite answer or a refusal (DomainError, Unavailable
# included), and a page not shaped as expected.
READ_ERRORS = (DomainError, KeyError, ValueError)


class Upstream:
    def __init__(self, settings: Settings) -> None:
        token, timeout = settings.outbound_token, settings.upstream_timeout_s
        self.exchange = ExchangeClient(settings.exchange_url, token, timeout)
        self.tasks = TaskClient(settings.task_progress_url, token, timeout)
        self.ledger = LedgerClient(settings.ledger_url, token, timeout)
        self.kafka_bootstrap = settings.kafka_bootstrap

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

    async def consumer_lags(self, timeout_s: float = 15.0) -> dict[str, int]:
        """Each consumer group of the suite: messages behind on all its topics."""
        groups = sorted(CONSUMER_GROUPS.items())
        lags = await asyncio.wait_for(
            asyncio.gather(*(consumer_lag_by_topic(self.kafka_bootstrap, g, t) for g, t in groups)),
            timeout_s,
        )
        return {g: sum(by_topic.values()) for (g, _), by_topic in zip(groups, lags, strict=True)}

    async def violations(self, service: str) -> dict[str, int]:
        """Failing rows per reconciliation check of `service` (rewards_ledger or exchange)."""
        client = self.ledger if service == "rewards_ledger" else self.exchange
        return await client.violations()
