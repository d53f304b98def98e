"""engagement composition root: `uvicorn services.engagement.main:app`."""

from __future__ import annotations

from services.engagement.api import router
from services.engagement.consumer import EngagementHandler
from services.engagement.leaderboards import Leaderboards
from services.engagement.models import PURGES, messaging, metadata
from services.engagement.settings import Settings
from services.engagement.workers import PeriodCloser, TierSweeper
from shared.events import (
    BEHAVIOR_DIVERTED,
    BEHAVIOR_EVENTS,
    ENGAGEMENT_EVENTS,
    EXCHANGE_EVENTS,
    LEDGER_EVENTS,
    PROGRESS_EVENTS,
    REWARDS_GRANTS,
)
from shared.service import Platform, Runtime, ServiceSpec, Worker, create_app


def build_parts(platform: Platform[Settings]) -> Leaderboards:
    return Leaderboards(platform.settings, platform.db)


def build_workers(rt: Runtime[Settings, Leaderboards]) -> list[Worker]:
    boards = rt.parts
    return [
        boards.writer,
        rt.consumer(EngagementHandler(rt.settings, boards.writer, boards.names)),
        PeriodCloser(rt.settings, rt.db, boards.index),
        TierSweeper(rt.settings, rt.db),
    ]


async def on_stop(rt: Runtime[Settings, Leaderboards]) -> None:
    await rt.parts.close()


SPEC = ServiceSpec(
    name="engagement",
    title="Jifen engagement",
    description="Leaderboards on what users earned (Redis-protocol index, PostgreSQL truth), "
    "badges and member tiers; prizes and badge rewards paid as grants.",
    package="services.engagement",
    settings_factory=Settings,
    metadata=metadata,
    messaging=messaging,
    routers=[router],
    topics=[
        LEDGER_EVENTS,
        BEHAVIOR_EVENTS,
        PROGRESS_EVENTS,
        EXCHANGE_EVENTS,
        BEHAVIOR_DIVERTED,
        ENGAGEMENT_EVENTS,
        REWARDS_GRANTS,
    ],
    build_parts=build_parts,
    build_workers=build_workers,
    purges=PURGES,
    on_stop=on_stop,
)

app = create_app(SPEC)
