"""rewards_ledger composition root: `uvicorn services.rewards_ledger.main:app`."""

from __future__ import annotations

from services.rewards_ledger import service
from services.rewards_ledger.api import reports_router, router
from services.rewards_ledger.consumer import GrantHandler
from services.rewards_ledger.models import messaging, metadata
from services.rewards_ledger.settings import Settings
from services.rewards_ledger.workers import ExpirySweeper, HoldSweeper, ReleaseSweeper
from shared.events import LEDGER_EVENTS, REWARDS_GRANTS
from shared.reconciliation import ReconciliationWorker
from shared.service import Runtime, ServiceSpec, Worker, create_app, no_parts


def build_workers(rt: Runtime[Settings, None]) -> list[Worker]:
    return [
        rt.consumer(GrantHandler(rt.settings)),
        ExpirySweeper(rt.settings, rt.db),
        ReleaseSweeper(rt.settings, rt.db),
        HoldSweeper(rt.settings, rt.db),
        ReconciliationWorker(
            "rewards_ledger",
            rt.db,
            service.reconcile,
            interval_s=rt.settings.reconciliation_interval_s,
            backoff_cap_s=rt.settings.retry_backoff_max_s,
        ),
    ]


SPEC = ServiceSpec(
    name="rewards_ledger",
    title="Jifen rewards ledger",
    description=(
        "Assets, accounts, lots with expiry, pending points and clawbacks, an append-only "
        "journal, debits, holds at checkout, extensions, liability and reconciliation."
    ),
    package="services.rewards_ledger",
    settings_factory=Settings,
    metadata=metadata,
    messaging=messaging,
    routers=[router, reports_router],
    topics=[REWARDS_GRANTS, LEDGER_EVENTS],
    build_parts=no_parts,
    build_workers=build_workers,
)

app = create_app(SPEC)
