"""The business health's inputs: NPS responses and redemption latencies (written by the
rollups), and the readings the worker takes of other services (lag, reconciliation)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bulk import Bulk

_NPS = Bulk("nps_responses", {"behavior_id": "text", "day": "date", "score": "smallint"})
_NEW_NPS = _NPS.insert("ON CONFLICT DO NOTHING RETURNING day, score")


async def add_nps_responses(
    session: AsyncSession, responses: dict[str, tuple[date, int]]
) -> list[tuple[date, int]]:
    """Record responses by behavior id; returns (day, score) of those not seen before."""
    if not responses:
        return []
    rows = [{"behavior_id": b, "day": d, "score": s} for b, (d, s) in sorted(responses.items())]
    return [(r.day, int(r.score)) for r in await session.execute(_NEW_NPS, _NPS.params(rows))]


_LATENCIES = Bulk(
    "redemption_latencies",
    {"redemption_id": "text", "completed_at": "timestamptz", "duration_ms": "bigint"},
)
_ADD_LATENCIES = _LATENCIES.insert("ON CONFLICT DO NOTHING")


async def add_redemption_latencies(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        rows = sorted(rows, key=lambda r: r["redemption_id"])
        await session.execute(_ADD_LATENCIES, _LATENCIES.params(rows))


_P99 = text(
    "SELECT percentile_disc(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99, count(*) AS n "
    "FROM redemption_latencies WHERE completed_at > :since"
)


async def redemption_p99_ms(session: AsyncSession, since: datetime) -> tuple[int | None, int]:
    """The p99 of the redemptions completed since `since`, and how many there were."""
    row = (await session.execute(_P99, {"since": since})).one()
    return (None if row.p99 is None else int(row.p99)), int(row.n)


@dataclass(frozen=True)
class Reading:
    signal: str
    value: Any  # the last good reading (None before the first)
    read_at: datetime | None
    error: str | None  # the last attempt's failure, None when it succeeded
    tried_at: datetime


_READINGS = text("SELECT signal, value, read_at, error, tried_at FROM health_signals")

_READ_OK = text(
    "INSERT INTO health_signals (signal, value, read_at, error, tried_at) "
    "VALUES (:signal, CAST(:value AS jsonb), :at, NULL, :at) ON CONFLICT (signal) DO UPDATE "
    "SET value = excluded.value, read_at = excluded.read_at, error = NULL, "
    "tried_at = excluded.tried_at"
)

_READ_FAILED = text(
    "INSERT INTO health_signals (signal, error, tried_at) VALUES (:signal, :error, :at) "
    "ON CONFLICT (signal) DO UPDATE SET error = excluded.error, tried_at = excluded.tried_at"
)


async def readings(session: AsyncSession) -> dict[str, Reading]:
    return {r.signal: Reading(**r._mapping) for r in await session.execute(_READINGS)}


async def save_reading(session: AsyncSession, signal: str, value: Any, at: datetime) -> None:
    await session.execute(_READ_OK, {"signal": signal, "value": json.dumps(value), "at": at})


async def save_failure(session: AsyncSession, signal: str, error: str, at: datetime) -> None:
    await session.execute(_READ_FAILED, {"signal": signal, "error": error[:500], "at": at})
