"""KPI targets as stored, and their audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class StoredTarget:
    kpi: str
    target: float
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True)
class TargetChange:
    id: int
    kpi: str
    old_target: float
    new_target: float
    changed_by: str
    operator: str | None
    reason: str
    changed_at: datetime


_STORED = text("SELECT kpi, target, updated_by, updated_at FROM kpi_targets")

# Locked, so two concurrent edits of one KPI each record the value the other left.
_LOCK = text("SELECT target FROM kpi_targets WHERE kpi = :kpi FOR UPDATE")

_SAVE = text(
    "INSERT INTO kpi_targets (kpi, target, updated_by, updated_at) "
    "VALUES (:kpi, :target, :by, now()) ON CONFLICT (kpi) DO UPDATE "
    "SET target = excluded.target, updated_by = excluded.updated_by, updated_at = now() "
    "RETURNING kpi, target, updated_by, updated_at"
)

_RECORD = text(
    "INSERT INTO kpi_target_changes (kpi, old_target, new_target, changed_by, operator, reason) "
    "VALUES (:kpi, :old, :new, :by, :operator, :reason)"
)

_HISTORY = text(
    "SELECT id, kpi, old_target, new_target, changed_by, operator, reason, changed_at "
    "FROM kpi_target_changes WHERE kpi = :kpi ORDER BY id DESC LIMIT :limit"
)


async def stored_targets(session: AsyncSession) -> dict[str, StoredTarget]:
    return {r.kpi: StoredTarget(**r._mapping) for r in await session.execute(_STORED)}


async def lock_target(session: AsyncSession, kpi: str) -> float | None:
    return (await session.execute(_LOCK, {"kpi": kpi})).scalar_one_or_none()


async def save_target(
    session: AsyncSession,
    kpi: str,
    old: float,
    new: float,
    by: str,
    operator: str | None,
    reason: str,
) -> StoredTarget:
    row = (await session.execute(_SAVE, {"kpi": kpi, "target": new, "by": by})).one()
    await session.execute(
        _RECORD,
        {"kpi": kpi, "old": old, "new": new, "by": by, "operator": operator, "reason": reason},
    )
    return StoredTarget(**row._mapping)


async def target_history(session: AsyncSession, kpi: str, limit: int) -> list[TargetChange]:
    rows = await session.execute(_HISTORY, {"kpi": kpi, "limit": limit})
    return [TargetChange(**r._mapping) for r in rows]
