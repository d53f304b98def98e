"""exchange composition root: `uvicorn services.exchange.main:app`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange import service
from services.exchange.api import router
from services.exchange.consumer import TierHandler
from services.exchange.models import messaging, metadata
from services.exchange.parts import Parts
from services.exchange.seed import seed
from services.exchange.service import Exchange, QuickOptions
from services.exchange.settings import Settings
from services.exchange.workers import RecoveryWorker
from services.insights.client import InsightsClient
from services.rewards_ledger.client import LedgerClient
from services.task_progress.client import TaskClient
from shared.events import ENGAGEMENT_EVENTS, EXCHANGE_EVENTS
from shared.reconciliation import ReconciliationWorker
from shared.service import Platform, Runtime, ServiceSpec, Worker, create_app


def build_parts(platform: Platform[Settings]) -> Parts:
    settings = platform.settings
    token, timeout = settings.outbound_token, settings.quick_options_timeout_s
    ledger = LedgerClient(settings.ledger_url, token, settings.ledger_timeout_s)
    quick = QuickOptions(
        settings,
        ledger,
        InsightsClient(settings.insights_url, token, timeout),
        TaskClient(settings.task_progress_url, token, timeout),
    )
    return Parts(Exchange(settings, platform.db, ledger), quick)


async def on_stop(rt: Runtime[Settings, Parts]) -> None:
    await rt.parts.close()


def build_workers(rt: Runtime[Settings, Parts]) -> list[Worker]:
    settings = rt.settings

    async def reconcile(session: AsyncSession) -> dict[str, Any]:
        return await service.reconcile(session, settings.pending_deadline_s)

    return [
        RecoveryWorker(rt.parts.exchange),
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
