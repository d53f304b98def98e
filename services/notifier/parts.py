"""The notifier's collaborators, built once per process: the providers, the ledger's client
(its reports), the scanner (daily triggers, campaigns) and the workers the API wakes."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier import repository as repo
from services.notifier.providers import build_providers
from services.notifier.settings import Settings
from services.notifier.triggers import Scanner
from services.notifier.workers import CampaignExpander, Dispatcher, TriggerScheduler
from services.rewards_ledger.client import LedgerClient
from shared.db import Database, after_commit


class Parts:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.providers = build_providers(settings)
        self.ledger = LedgerClient(
            settings.ledger_url, settings.outbound_token, settings.ledger_timeout_s
        )
        self.scanner = Scanner(settings, db, self.ledger)
        # Several loops per process: one claims and records while another waits on the
        # providers (SKIP LOCKED keeps their batches apart).
        self.dispatchers = [
            Dispatcher(settings, db, self.providers, number)
            for number in range(settings.dispatch_loops)
        ]
        self.expander = CampaignExpander(settings, self.scanner, self.wake_dispatch)
        self.triggers = TriggerScheduler(settings, self.scanner, db, self.wake_dispatch)

    def wake_dispatch(self) -> None:
        for dispatcher in self.dispatchers:
            dispatcher.wake()

    def wake_expander(self, session: AsyncSession) -> None:
        after_commit(session, self.expander.wake)

    async def zones(self) -> list[str]:
        """The business timezone and every timezone a user chose."""
        async with self.db.transaction() as session:
            chosen = await repo.timezones_in_use(session)
        return sorted({self.settings.business_timezone, *chosen})

    async def close(self) -> None:
        await self.providers.close()
        await self.ledger.close()
