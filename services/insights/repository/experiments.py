"""Experiments: their definitions and status, and each variant's exposures and outcomes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights.models import experiments


@dataclass(frozen=True)
class Experiment:
    """One experiment's definition and status (the columns of `experiments`)."""

    key: str
    name: str
    description: str
    variants: list[dict[str, Any]]  # [{key, weight}]
    metric: dict[str, Any]  # {type, event, window_days}
    namespace: list[Any] | None  # [name, start, end]
    coverage: float
    seed: str | None
    hash_version: int
    status: str  # draft | running | stopped
    created_at: datetime
    updated_at: datetime


async def insert_experiment(session: AsyncSession, values: dict[str, Any]) -> bool:
    result = await session.execute(
        text(
            "INSERT INTO experiments (key, name, description, variants, metric, namespace, "
            "coverage, seed, hash_version, status) VALUES (:key, :name, :description, "
            "CAST(:variants AS jsonb), CAST(:metric AS jsonb), CAST(:namespace AS jsonb), "
            ":coverage, :seed, :hash_version, :status) ON CONFLICT (key) DO NOTHING RETURNING key"
        ),
        {
            **values,
            "variants": json.dumps(values["variants"]),
            "metric": json.dumps(values["metric"]),
            "namespace": None if values["namespace"] is None else json.dumps(values["namespace"]),
        },
    )
    return result.first() is not None


async def experiment(session: AsyncSession, key: str) -> Experiment | None:
    result = await session.execute(select(experiments).where(experiments.c.key == key))
    row = result.one_or_none()
    return None if row is None else Experiment(**row._mapping)


async def list_experiments(
    session: AsyncSession, status: str | None, limit: int, offset: int
) -> tuple[list[Experiment], int]:
    query = select(experiments)
    count = text(
        "SELECT count(*) FROM experiments "
        "WHERE (CAST(:status AS text) IS NULL OR status = CAST(:status AS text))"
    )
    if status is not None:
        query = query.where(experiments.c.status == status)
    rows = await session.execute(query.order_by(experiments.c.key).limit(limit).offset(offset))
    total = (await session.execute(count, {"status": status})).scalar_one()
    return [Experiment(**r._mapping) for r in rows], int(total)


async def set_status(session: AsyncSession, key: str, status: str) -> Experiment | None:
    result = await session.execute(
        experiments.update()
        .where(experiments.c.key == key)
        .values(status=status, updated_at=text("now()"))
        .returning(*experiments.c)
    )
    row = result.one_or_none()
    return None if row is None else Experiment(**row._mapping)


# Per variant: users exposed, users with an outcome in their window, and the sum and sum of
# squares of each user's outcome total (for a mean metric's Welch test).
_RESULTS = text(
    """
    SELECT e.variant,
           count(*) AS n,
           count(*) FILTER (WHERE o.events > 0) AS converted,
           coalesce(sum(o.total), 0) AS total,
           coalesce(sum(o.total * o.total), 0) AS total_squares
    FROM exposures e
    CROSS JOIN LATERAL (
        SELECT count(*) AS events, coalesce(sum(x.amount), 0)::float8 AS total
        FROM outcomes x
        WHERE x.user_id = e.user_id AND x.kind = :kind
          AND (x.experiment IS NULL OR x.experiment = e.experiment_key)
          AND x.occurred_at >= e.exposed_at
          AND x.occurred_at < e.exposed_at + make_interval(days => :window_days)
    ) o
    WHERE e.experiment_key = :key
    GROUP BY e.variant
    """
)


async def variant_totals(
    session: AsyncSession, key: str, kind: str, window_days: int
) -> dict[str, Row[Any]]:
    rows = await session.execute(_RESULTS, {"key": key, "kind": kind, "window_days": window_days})
    return {r.variant: r for r in rows}
