"""notifier composition root: `uvicorn services.notifier.main:app`."""

from __future__ import annotations

from services.notifier.api import router
from services.notifier.consumer import NotifierHandler
from services.notifier.models import PURGES, messaging, metadata
from services.notifier.parts import Parts
from services.notifier.settings import Settings
from shared.events import (
    ENGAGEMENT_EVENTS,
    EXCHANGE_EVENTS,
    EXPERIMENT_EXPOSURES,
    NOTIFY_EVENTS,
    PROGRESS_EVENTS,
)
from shared.service import Platform, Runtime, ServiceSpec, Worker, create_app


def build_parts(platform: Platform[Settings]) -> Parts:
    return Parts(platform.settings, platform.db)


def build_workers(rt: Runtime[Settings, Parts]) -> list[Worker]:
    parts = rt.parts
    return [
        rt.consumer(NotifierHandler(rt.settings, parts.wake_dispatch)),
        *parts.dispatchers,
        parts.triggers,
        parts.expander,
    ]


async def on_stop(rt: Runtime[Settings, Parts]) -> None:
    await rt.parts.close()


SPEC = ServiceSpec(
    name="notifier",
    title="Jifen notifier",
    description="Reminders and push that help and never spam: devices, preferences, quiet "
    "hours, daily caps, points-expiry / streak / task reminders, shipping and tier messages, "
    "campaigns, templates; APNs, FCM, webhook and log providers.",
    package="services.notifier",
    settings_factory=Settings,
    metadata=metadata,
    messaging=messaging,
    routers=[router],
    topics=[
        PROGRESS_EVENTS,
        EXCHANGE_EVENTS,
        ENGAGEMENT_EVENTS,
        NOTIFY_EVENTS,
        EXPERIMENT_EXPOSURES,
    ],
    build_parts=build_parts,
    build_workers=build_workers,
    purges=PURGES,
    on_stop=on_stop,
)

app = create_app(SPEC)
