"""KPI reads: the daily counters of a range, the holders before it, its distinct redeemers."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

_COUNTERS_BETWEEN = text(
    "SELECT day, asset, metric, value FROM kpi_daily WHERE day BETWEEN :start AND :end"
)

_HOLDERS_BEFORE = text(
    "SELECT asset, sum(CASE metric WHEN 'holder_opens' THEN value ELSE -value END) AS holders "
    "FROM kpi_daily WHERE day < :start AND metric IN ('holder_opens', 'holder_closes') "
    "GROUP BY asset"
)

_DISTINCT_REDEEMERS = text(
    "SELECT count(DISTINCT user_id) FROM redeemer_days WHERE day BETWEEN :start AND :end"
)


async def counters_between(session: AsyncSession, start: date, end: date) -> list[Row[Any]]:
    return list(await session.execute(_COUNTERS_BETWEEN, {"start": start, "end": end}))


async def holders_before(session: AsyncSession, start: date) -> dict[str, int]:
    return {
        r.asset: int(r.holders) for r in await session.execute(_HOLDERS_BEFORE, {"start": start})
    }


async def distinct_redeemers(session: AsyncSession, start: date, end: date) -> int:
    result = await session.execute(_DISTINCT_REDEEMERS, {"start": start, "end": end})
    return int(result.scalar_one())
