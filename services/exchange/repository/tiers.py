"""Member tiers: the read model of engagement's tier.changed a tier-only item checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange.models import member_tiers, tier_ladder


async def tier_levels(
    session: AsyncSession, user_ids: Sequence[str], codes: Sequence[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """(user -> level of their tier, tier code -> level) as last heard from engagement. A
    user never heard of holds the ladder's base tier when its lowest tier needs no growth."""
    rows = (
        await session.execute(
            select(tier_ladder.c.code, tier_ladder.c.level, tier_ladder.c.min_growth)
        )
    ).all()
    ladder = {r.code: int(r.level) for r in rows}
    base = next((int(r.level) for r in rows if r.level == 1 and r.min_growth <= 0), 0)
    members = await session.execute(
        select(member_tiers.c.user_id, member_tiers.c.tier).where(
            member_tiers.c.user_id.in_(sorted(set(user_ids)))
        )
    )
    users = {u: base for u in user_ids}
    for m in members:
        users[m.user_id] = ladder.get(m.tier, 0) if m.tier is not None else 0
    return users, {c: ladder[c] for c in codes if c in ladder}


async def save_member_tiers(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Record users' tiers; a row only moves forward in `sequence`."""
    if not rows:
        return
    stmt = pg_insert(member_tiers).values(sorted(rows, key=lambda r: r["user_id"]))
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["user_id"],
            set_={
                "tier": stmt.excluded.tier,
                "sequence": stmt.excluded.sequence,
                "updated_at": func.now(),
            },
            where=member_tiers.c.sequence < stmt.excluded.sequence,
        )
    )


async def save_ladder(session: AsyncSession, version: int, ladder: list[dict[str, Any]]) -> None:
    """Replace the ladder's order with `version`'s, unless a newer one is already here."""
    await session.execute(text("LOCK TABLE tier_ladder IN EXCLUSIVE MODE"))
    current = (
        await session.execute(select(func.coalesce(func.max(tier_ladder.c.version), 0)))
    ).scalar_one()
    if version < int(current):
        return
    await session.execute(tier_ladder.delete())
    if ladder:
        await session.execute(
            insert(tier_ladder),
            [
                {
                    "code": t["code"],
                    "level": i + 1,
                    "min_growth": t["min_growth"],
                    "version": version,
                }
                for i, t in enumerate(ladder)
            ],
        )
