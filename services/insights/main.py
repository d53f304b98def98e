"""insights composition root: `uvicorn services.insights.main:app`."""

from __future__ import annotations

from services.insights import INFO
from services.insights.api import router
from services.insights.consumer import InsightsHandler
from services.insights.models import messaging, metadata
from services.insights.parts import Parts
from services.insights.seed import seed_demo
from services.insights.service import Recommender
from services.insights.settings import Settings
from services.insights.upstream import Upstream
from services.insights.workers import ExpiringSync, HealthReadings, KpiGauges, ReferenceSync
from shared.service import Platform, Runtime, ServiceSpec, Worker, create_app


def build_parts(platform: Platform[Settings]) -> Parts:
    return Parts(Recommender(platform.settings, platform.db), Upstream(platform.settings))


def build_workers(rt: Runtime[Settings, Parts]) -> list[Worker]:
    upstream = rt.parts.upstream
    return [
        rt.consumer(InsightsHandler(rt.settings)),
        ReferenceSync(rt.settings, rt.db, upstream),
        ExpiringSync(rt.settings, rt.db, upstream),
        KpiGauges(rt.settings, rt.db),
        HealthReadings(rt.settings, rt.db, upstream),
    ]


async def on_stop(rt: Runtime[Settings, Parts]) -> None:
    await rt.parts.close()


SPEC = ServiceSpec(
    name="insights",
    title="Jifen insights",
    description="KPIs from every topic's rollups (targets stored and audited), the business "
    "health, A/B experiments (GrowthBook-compatible "
    "assignment, exposures, results with significance and SRM checks) and redemption "
    "recommendations.",
    package="services.insights",
    settings_factory=Settings,
    metadata=metadata,
    messaging=messaging,
    routers=[router],
    topics=list(INFO.consumer("events").topics),
    build_parts=build_parts,
    build_workers=build_workers,
    seed=seed_demo,
    on_stop=on_stop,
)

app = create_app(SPEC)
