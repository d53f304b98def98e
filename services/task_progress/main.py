"""task_progress composition root: `uvicorn services.task_progress.main:app`."""

from __future__ import annotations

from services.rewards_ledger.client import LedgerClient
from services.task_progress.api import router
from services.task_progress.consumer import BehaviorHandler, TierHandler
from services.task_progress.models import PURGES, messaging, metadata
from services.task_progress.seed import seed_demo_tasks
from services.task_progress.settings import Settings
from shared.events import BEHAVIOR_EVENTS, ENGAGEMENT_EVENTS, PROGRESS_EVENTS, REWARDS_GRANTS
from shared.service import Platform, Runtime, ServiceSpec, Worker, create_app


def build_parts(platform: Platform[Settings]) -> LedgerClient:
    settings = platform.settings
    return LedgerClient(settings.ledger_url, settings.outbound_token, settings.ledger_timeout_s)


def build_workers(rt: Runtime[Settings, LedgerClient]) -> list[Worker]:
    return [rt.consumer(BehaviorHandler(rt.settings)), rt.consumer(TierHandler())]


async def on_stop(rt: Runtime[Settings, LedgerClient]) -> None:
    await rt.parts.close()


SPEC = ServiceSpec(
    name="task_progress",
    title="Jifen task progress",
    description="Operations-configured task rules; per-user progress per period; one grant "
    "per reward of a completion; refunded orders take back what they earned.",
    package="services.task_progress",
    settings_factory=Settings,
    metadata=metadata,
    messaging=messaging,
    routers=[router],
    topics=[BEHAVIOR_EVENTS, REWARDS_GRANTS, PROGRESS_EVENTS, ENGAGEMENT_EVENTS],
    purges=PURGES,
    build_parts=build_parts,
    build_workers=build_workers,
    seed=seed_demo_tasks,
    on_stop=on_stop,
)

app = create_app(SPEC)
