"""exchange composition root: `uvicorn services.exchange.main:app`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange import service
from services.exchange.api import router
from services.exchange.consumer import TierHandler
from services.exchange.models import messaging, metadata
from services.exchange.seed import seed
from services.exchange.service import Exchange
from services.exchange.settings import Settings
from services.exchange.workers import RecoveryWorker
from services.rewards_ledger.client import LedgerClient
from shared.events import ENGAGEMENT_EVENTS, EXCHANGE_EVENTS
from shared.reconciliation import ReconciliationWorker
from shared.service import Platform, Runtime, ServiceSpec, Worker, create_app


def build_parts(platform: Platform[Settings]) -> Exchange:
    settings = platform.settings
    ledger = LedgerClient(settings.ledger_url, settings.outbound_token, settings.ledger_timeout_s)
    return Exchange(settings, platform.db, ledger)


async def on_stop(rt: Runtime[Settings, Exchange]) -> None:
    await rt.parts.batcher.drain()  # redemptions under way finish before the client closes
    await rt.parts.ledger.close()


def build_workers(rt: Runtime[Settings, Exchange]) -> list[Worker]:
    settings = rt.settings

    async def reconcile(session: AsyncSession) -> dict[str, Any]:
        return await service.reconcile(session, settings.pending_deadline_s)

    return [
        RecoveryWorker(rt.parts),
        rt.consumer(TierHandler()),
        ReconciliationWorker(
            "exchange",
            rt.db,
            reconcile,
            interval_s=settings.reconciliation_interval_s,
            backoff_cap_s=settings.retry_backoff_max_s,
        ),
    ]


SPEC = ServiceSpec(
    name="exchange",
    title="Jifen exchange",
    description="The points mall: catalog, one-click redemption, cancellation and refunds.",
    package="services.exchange",
    settings_factory=Settings,
    metadata=metadata,
    messaging=messaging,
    routers=[router],
    topics=[EXCHANGE_EVENTS, ENGAGEMENT_EVENTS],
    build_parts=build_parts,
    build_workers=build_workers,
    seed=seed,
    on_stop=on_stop,
)

app = create_app(SPEC)
