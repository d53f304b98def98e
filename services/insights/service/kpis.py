"""KPIs from the rollups: each business day's, a window's (DAU growth against the window
just before), and the last 30 days against the stored targets."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.insights import repository as repo
from services.insights.domain import (
    DAU,
    days_between,
    kpi_day,
    window_kpis,
)
from services.insights.service.targets import current_targets
from shared.errors import InvalidInput

MAX_KPI_DAYS = 366
SUMMARY_DAYS = 30


def _check_range(start: date, end: date) -> None:
    if end < start:
        raise InvalidInput("`to` must not be before `from`")
    if (end - start).days + 1 > MAX_KPI_DAYS:
        raise InvalidInput(f"at most {MAX_KPI_DAYS} days at a time")


async def kpi_series(
    session: AsyncSession, start: date, end: date, asset: str
) -> list[dict[str, Any]]:
    """Each business day's KPIs in [start, end]."""
    _check_range(start, end)
    by_day: dict[date, dict[tuple[str, str], int]] = {}
    for r in await repo.counters_between(session, start, end):
        by_day.setdefault(r.day, {})[(r.asset, r.metric)] = int(r.value)
    holders = (await repo.holders_before(session, start)).get(asset, 0)
    series = []
    for day in days_between(start, end):
        counts = by_day.get(day, {})
        series.append(kpi_day(day, counts, holders, asset))
        holders += counts.get((asset, "holder_opens"), 0) - counts.get((asset, "holder_closes"), 0)
    return series


async def window(session: AsyncSession, start: date, end: date, asset: str) -> dict[str, Any]:
    """The KPIs of the window [start, end], DAU growth against the window just before."""
    days = (end - start).days + 1
    before_start = start - timedelta(days=days)
    totals: Counter[tuple[str, str]] = Counter()
    dau: Counter[date] = Counter()
    for r in await repo.counters_between(session, before_start, end):
        if r.metric == DAU:
            dau[r.day] += int(r.value)
        if r.day >= start:
            totals[(r.asset, r.metric)] += int(r.value)
    dau_now = sum(v for d, v in dau.items() if d >= start) / days
    dau_before = sum(v for d, v in dau.items() if d < start) / days
    holders = (await repo.holders_before(session, start)).get(asset, 0)
    redeemers = await repo.distinct_redeemers(session, start, end)
    return window_kpis(totals, holders, redeemers, dau_now, dau_before, asset)


async def summary(session: AsyncSession, today: date, asset: str) -> dict[str, Any]:
    start = today - timedelta(days=SUMMARY_DAYS - 1)
    values = await window(session, start, today, asset)
    targets = await current_targets(session)
    return {
        "from": start.isoformat(),
        "to": today.isoformat(),
        "asset": asset,
        "items": [
            {
                "kpi": t.kpi,
                "value": values[t.kpi],
                "target": t.target,
                "comparison": t.comparison,
                "met": t.met(values[t.kpi]),
                "description": t.description,
            }
            for t in targets
        ],
        "values": values,
    }
