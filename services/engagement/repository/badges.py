"""Badges and the awards made."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.models import (
    badges,
    user_badges,
)

# -- badges ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Badge:
    code: str
    name: str
    description: str
    icon_url: str | None
    criteria: dict[str, Any]
    reward: dict[str, Any] | None  # {reward_type, amount}: a grant on award
    active: bool
    created_at: datetime


async def insert_badge(session: AsyncSession, values: dict[str, Any]) -> Badge | None:
    stmt = (
        pg_insert(badges)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["code"])
        .returning(*badges.c)
    )
    row = (await session.execute(stmt)).first()
    return Badge(**row._mapping) if row is not None else None


async def list_badges(session: AsyncSession, active_only: bool = False) -> list[Badge]:
    query = select(badges).order_by(badges.c.code)
    if active_only:
        query = query.where(badges.c.active)
    return [Badge(**r._mapping) for r in await session.execute(query)]


async def award_badges(session: AsyncSession, rows: list[dict[str, Any]]) -> list[Row[Any]]:
    """Insert awards; returns those that are new (an award already made is left alone)."""
    if not rows:
        return []
    rows = sorted(rows, key=lambda r: (r["user_id"], r["badge_code"]))
    result = await session.execute(
        pg_insert(user_badges)
        .values(rows)
        .on_conflict_do_nothing()
        .returning(user_badges.c.user_id, user_badges.c.badge_code, user_badges.c.awarded_at)
    )
    return list(result.all())


async def awarded(session: AsyncSession, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """user -> {badge code: awarded_at}."""
    if not user_ids:
        return {}
    rows = await session.execute(
        select(user_badges).where(user_badges.c.user_id.in_(sorted(set(user_ids))))
    )
    found: dict[str, dict[str, Any]] = {}
    for r in rows:
        found.setdefault(r.user_id, {})[r.badge_code] = r.awarded_at
    return found
