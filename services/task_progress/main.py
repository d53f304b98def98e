"""task_progress composition root: `uvicorn services.task_progress.main:app`."""

from __future__ import annotations

from services.task_progress.api import router
from services.task_progress.consumer import BehaviorHandler
from services.task_progress.models import messaging, metadata
from services.task_progress.seed import seed_demo_tasks
from services.task_progress.settings import Settings
from shared.events import BEHAVIOR_EVENTS, REWARDS_GRANTS
from shared.service import Runtime, ServiceSpec, Worker, create_app, no_parts


def build_workers(rt: Runtime[Settings, None]) -> list[Worker]:
    return [rt.consumer(BehaviorHandler(rt.settings))]


SPEC = ServiceSpec(
    name="task_progress",
    title="Jifen task progress",
    description="Operations-configured task rules; per-user progress per period; one grant per completion.",
    package="services.task_progress",
    settings_factory=Settings,
    metadata=metadata,
    messaging=messaging,
    routers=[router],
    topics=[BEHAVIOR_EVENTS, REWARDS_GRANTS],
    build_parts=no_parts,
    build_workers=build_workers,
    seed=seed_demo_tasks,
)

app = create_app(SPEC)
