"""The tier ladder and users' tiers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.models import (
    tiers,
    user_tiers,
)

# -- tiers ----------------------------------------------------------------------------------


async def ladder_rows(session: AsyncSession) -> list[Row[Any]]:
    return list((await session.execute(select(tiers).order_by(tiers.c.min_growth))).all())


async def replace_ladder(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Replace the ladder; returns its new version."""
    await session.execute(text("LOCK TABLE tiers IN EXCLUSIVE MODE"))
    version = int(
        (await session.execute(select(func.coalesce(func.max(tiers.c.version), 0)))).scalar_one()
    )
    await session.execute(delete(tiers))
    if rows:
        await session.execute(insert(tiers), [{**r, "version": version + 1} for r in rows])
    return version + 1


async def lock_user_tiers(session: AsyncSession, user_ids: Sequence[str]) -> dict[str, Row[Any]]:
    if not user_ids:
        return {}
    rows = await session.execute(
        select(user_tiers)
        .where(user_tiers.c.user_id.in_(sorted(set(user_ids))))
        .order_by(user_tiers.c.user_id)
        .with_for_update()
    )
    return {r.user_id: r for r in rows}


async def user_tier(session: AsyncSession, user_id: str) -> Row[Any] | None:
    return (
        await session.execute(select(user_tiers).where(user_tiers.c.user_id == user_id))
    ).first()


async def save_user_tier(session: AsyncSession, values: dict[str, Any]) -> None:
    stmt = pg_insert(user_tiers).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["user_id"],
        set_={k: stmt.excluded[k] for k in values if k != "user_id"} | {"updated_at": func.now()},
    )
    await session.execute(stmt)


async def claim_due_tiers(
    session: AsyncSession, due_before: datetime, limit: int
) -> list[Row[Any]]:
    rows = await session.execute(
        select(user_tiers)
        .where(user_tiers.c.evaluate_at <= due_before)
        .order_by(user_tiers.c.evaluate_at, user_tiers.c.user_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows.all())
