"""SQL of progress rows (locked per batch, saved in one statement) and of grants."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress.models import grants, progress
from shared.bulk import Bulk, KeyedRows

ProgressKey = tuple[str, str, str]  # (user_id, task_id, period_key)


PROGRESS_KEYS = Bulk("progress", {"user_id": "text", "task_id": "text", "period_key": "text"})
PROGRESS = Bulk(
    "progress",
    {
        "user_id": "text",
        "task_id": "text",
        "period_key": "text",
        "count": "integer",
        "completions": "integer",
        "points": "bigint",
        "status": "text",
        "last_event_at": "timestamptz",
    },
)
GRANTS = Bulk(
    "grants",
    {
        "grant_id": "text",
        "user_id": "text",
        "task_id": "text",
        "period_key": "text",
        "completion": "integer",
        "points": "integer",
        "expires_at": "timestamptz",
        "causation_event_id": "text",
        "asset": "text",
        "available_at": "timestamptz",
        "rule_version": "integer",
    },
)
LOCKED_PROGRESS = KeyedRows(PROGRESS_KEYS, "t.count AS n, t.completions, t.points, t.last_event_at")
_SAVE_PROGRESS = PROGRESS.update(
    ["user_id", "task_id", "period_key"],
    "count = v.count, completions = v.completions, points = v.points, status = v.status, "
    "last_event_at = v.last_event_at, updated_at = now()",
)
_INSERT_GRANTS = GRANTS.insert()


async def lock_progress(
    session: AsyncSession, keys: Sequence[ProgressKey]
) -> dict[ProgressKey, Any]:
    """Create missing progress rows and lock all of them (in key order, to avoid deadlocks).

    Each row has n (the count), completions, points and last_event_at."""
    rows = await LOCKED_PROGRESS.lock(session, keys)
    return {(u, t, p): row for (u, t, p), row in rows.items()}


async def save_progress(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """rows: every PROGRESS column per progress row."""
    if rows:
        await session.execute(_SAVE_PROGRESS, PROGRESS.params(rows))


async def insert_grants(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_INSERT_GRANTS, GRANTS.params(rows))


async def progress_for_user(
    session: AsyncSession, user_id: str, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Any]:
    if not keys:
        return {}
    rows = await session.execute(
        select(progress).where(
            progress.c.user_id == user_id,
            tuple_(progress.c.task_id, progress.c.period_key).in_(list(keys)),
        )
    )
    return {(r.task_id, r.period_key): r for r in rows}


async def grants_for_user(session: AsyncSession, user_id: str, limit: int) -> list[Any]:
    rows = await session.execute(
        select(grants)
        .where(grants.c.user_id == user_id)
        .order_by(grants.c.created_at.desc())
        .limit(limit)
    )
    return list(rows)
