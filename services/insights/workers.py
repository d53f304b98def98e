"""Insights' background loops: the reference data copies (catalog and task rules, points
expiring soon) and the KPI gauges' refresher."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from services.insights import reference, service
from services.insights.domain import POINTS, TARGETS, business_day
from services.insights.metrics import GAUGES_UPDATED, KPI, KPI_TARGET_MET
from services.insights.settings import Settings
from services.insights.upstream import Upstream
from shared.db import Database
from shared.worker import PollingWorker


class ReferenceSync(PollingWorker):
    """Copies the catalog and the task rules every `reference_refresh_s`."""

    def __init__(self, settings: Settings, db: Database, upstream: Upstream) -> None:
        super().__init__(
            poll_s=settings.reference_refresh_s,
            full_batch=1 << 30,
            backoff_cap_s=settings.retry_backoff_max_s,
        )
        self.settings = settings
        self.db = db
        self.upstream = upstream

    async def step(self) -> int:
        await reference.copy_catalog_and_rules(self.db, self.upstream)
        return 0


class ExpiringSync(PollingWorker):
    """Copies the points expiring within `expiring_window_days` every `expiring_refresh_s`,
    and sets the expiring-pile gauge from them."""

    def __init__(self, settings: Settings, db: Database, upstream: Upstream) -> None:
        super().__init__(
            poll_s=settings.expiring_refresh_s,
            full_batch=1 << 30,
            backoff_cap_s=settings.retry_backoff_max_s,
        )
        self.settings = settings
        self.db = db
        self.upstream = upstream

    async def step(self) -> int:
        await reference.copy_expiring(self.settings, self.db, self.upstream, datetime.now(UTC))
        return 0


GAUGE_KPIS = (
    "dau_average",
    "dau_growth",
    "task_completion_rate",
    "push_open_rate",
    "redeemer_rate",
    "redemption_rate",
    "earn_to_redeem_days",
    "expiry_rate",
    "points_issued",
    "points_redeemed",
    "points_expired",
)


class KpiGauges(PollingWorker):
    """Recomputes the KPI gauges from the rollups every `gauges_refresh_s`."""

    def __init__(self, settings: Settings, db: Database) -> None:
        super().__init__(
            poll_s=settings.gauges_refresh_s,
            full_batch=1 << 30,
            backoff_cap_s=settings.retry_backoff_max_s,
        )
        self.settings = settings
        self.db = db

    async def step(self) -> int:
        today = business_day(datetime.now(UTC), self.settings.tz)
        async with self.db.read_only() as session:
            report = await service.summary(session, today, POINTS)
            yesterday, day = await service.kpi_series(
                session, today - timedelta(days=1), today, POINTS
            )
        values = report["values"]
        KPI.labels("dau").set(day["dau"])
        KPI.labels("dau_yesterday").set(yesterday["dau"])
        for kpi in GAUGE_KPIS:
            value = values.get(kpi)
            if value is not None:
                KPI.labels(kpi).set(value)
        for target in TARGETS:
            met = target.met(values.get(target.kpi))
            if met is not None:
                KPI_TARGET_MET.labels(target.kpi).set(1 if met else 0)
        GAUGES_UPDATED.set(time.time())
        return 0
