"""Business health: the seed's signals read and graded. The rates and the redemption p99 come
from insights' own rollups; the consumer lag and both reconciliations from the readings the
worker takes (workers.HealthReadings), so a request never waits on the broker or a scan."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.insights import repository as repo
from services.insights.domain import EXPIRED, ISSUED, POINTS, REDEEMED, REFUNDED, ratio
from services.insights.health import (
    Bounds,
    Reason,
    graded,
    lag_reason,
    overall,
    reconciliation_reason,
)
from services.insights.settings import Settings

LAG = "consumer_lag"
RECONCILED = ("rewards_ledger", "exchange")


def reconciliation_signal(service: str) -> str:
    return f"reconciliation_{service}"


async def _rates(session: AsyncSession, settings: Settings, now: datetime) -> list[Reason]:
    today = now.astimezone(settings.tz).date()
    start = today - timedelta(days=settings.health_window_days - 1)
    sums: Counter[str] = Counter()
    for r in await repo.counters_between(session, start, today):
        if r.asset == POINTS:
            sums[r.metric] += int(r.value)
    issued = sums[ISSUED]
    days = settings.health_window_days
    return [
        graded(
            "redemption_rate",
            ratio(sums[REDEEMED] - sums[REFUNDED], issued),
            Bounds(
                settings.health_redemption_rate_warning,
                settings.health_redemption_rate_critical,
                low_is_bad=True,
            ),
            f"points redeemed / issued over {days} days",
        ),
        graded(
            "expiry_rate",
            ratio(sums[EXPIRED], issued),
            Bounds(settings.health_expiry_rate_warning, settings.health_expiry_rate_critical),
            f"points expired / issued over {days} days",
        ),
    ]


async def _slow(session: AsyncSession, settings: Settings, now: datetime) -> Reason:
    since = now - timedelta(seconds=settings.health_slow_window_s)
    p99, n = await repo.redemption_p99_ms(session, since)
    return graded(
        "slow_redemptions",
        p99,
        Bounds(
            settings.health_slow_redemption_warning_ms,
            settings.health_slow_redemption_critical_ms,
        ),
        f"the p99 of {n} redemptions (ms, request to completion) in "
        f"{settings.health_slow_window_s} s",
    )


def _stale(reading: repo.Reading | None, max_age_s: float, now: datetime) -> bool:
    return (
        reading is None
        or reading.read_at is None
        or ((now - reading.read_at).total_seconds() > max_age_s)
    )


def _outside(readings: dict[str, repo.Reading], settings: Settings, now: datetime) -> list[Reason]:
    """Lag and reconciliation as last read by the worker; a reading three intervals old is
    stale (the worker down or every read failing)."""
    lag = readings.get(LAG)
    reasons = [
        lag_reason(
            None if lag is None else lag.value,
            Bounds(settings.health_lag_warning, settings.health_lag_critical),
            _stale(lag, max(90.0, 3 * settings.health_lag_refresh_s), now),
            None if lag is None else lag.error,
        )
    ]
    for service in RECONCILED:
        found = readings.get(reconciliation_signal(service))
        reasons.append(
            reconciliation_reason(
                service,
                None if found is None else found.value,
                _stale(found, max(900.0, 3 * settings.health_reconciliation_refresh_s), now),
                None if found is None else found.error,
            )
        )
    return reasons


async def business_health(
    session: AsyncSession, settings: Settings, now: datetime, detailed: bool
) -> dict[str, Any]:
    """{status, reasons, checked_at}: the worst signal's status; `detailed` with each
    signal's value, threshold and message (operators), else the verdicts only."""
    reasons = [
        *await _rates(session, settings, now),
        await _slow(session, settings, now),
        *_outside(await repo.readings(session), settings, now),
    ]
    return {
        "status": overall(reasons),
        "reasons": [r.full() if detailed else r.public() for r in reasons],
        "checked_at": now,
    }
