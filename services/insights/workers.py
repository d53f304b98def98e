"""Insights' background loops: the reference data copies (catalog and task rules, points
expiring soon), the KPI gauges' refresher and the business health's outside readings."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from services.insights import reference, service
from services.insights import repository as repo
from services.insights.domain import POINTS, business_day
from services.insights.metrics import GAUGES_UPDATED, KPI, KPI_TARGET, KPI_TARGET_MET
from services.insights.service.health import LAG, RECONCILED, reconciliation_signal
from services.insights.settings import Settings
from services.insights.upstream import Upstream
from shared.db import Database
from shared.worker import PollingWorker

log = logging.getLogger(__name__)


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
    "nps",
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
        # The stored targets (operators edit them): the alerts compare each KPI with its
        # target gauge, so an edit reaches them within one refresh.
        for item in report["items"]:
            KPI_TARGET.labels(item["kpi"]).set(item["target"])
            if item["met"] is not None:
                KPI_TARGET_MET.labels(item["kpi"]).set(1 if item["met"] else 0)
        GAUGES_UPDATED.set(time.time())
        return 0


class HealthReadings(PollingWorker):
    """Reads what the business health needs from outside insights and stores it: the suite's
    consumer lag every `health_lag_refresh_s`, the ledger's and the exchange's reconciliation
    every `health_reconciliation_refresh_s` (each scans its books), and every
    `health_lag_refresh_s` while one failed or could not be read, so the health clears as
    soon as the books do. The API grades the stored readings: a health request never waits
    on the broker or a scan."""

    def __init__(self, settings: Settings, db: Database, upstream: Upstream) -> None:
        super().__init__(
            poll_s=settings.health_lag_refresh_s,
            full_batch=1 << 30,
            backoff_cap_s=settings.retry_backoff_max_s,
        )
        self.settings = settings
        self.db = db
        self.upstream = upstream
        self._reconciled_at: float | None = None  # the last clean reading of both

    async def step(self) -> int:
        await self._read(LAG, self.upstream.consumer_lags)
        since = None if self._reconciled_at is None else time.monotonic() - self._reconciled_at
        if since is None or since >= self.settings.health_reconciliation_refresh_s:
            clean = True
            for name in RECONCILED:
                found = await self._read(
                    reconciliation_signal(name), partial(self.upstream.violations, name)
                )
                clean = clean and found is not None and not any(found.values())
            self._reconciled_at = time.monotonic() if clean else None
        return 0

    async def _read(self, signal: str, read: Callable[[], Awaitable[Any]]) -> Any:
        """One reading stored and returned, or its failure stored (the last good value stays,
        and ages) and None returned."""
        try:
            value, error = await read(), None
        except Exception as exc:  # any failure is a blind spot the health reports, not a crash
            log.warning("health reading failed", extra={"signal": signal, "error": repr(exc)})
            value, error = None, f"{type(exc).__name__}: {exc}"
        async with self.db.transaction() as session:
            now = datetime.now(UTC)
            if error is None:
                await repo.save_reading(session, signal, value, now)
            else:
                await repo.save_failure(session, signal, error, now)
        return value
