"""The quick options' reads: the catalog's items in a price band or the cheapest ones, and how
often items were redeemed lately (`exchange_count`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange.models import items, redemptions
from services.exchange.repository.items import Item, available_now


async def band_candidates(
    session: AsyncSession, now: datetime, low: int, high: int, aim: float, limit: int
) -> list[Item]:
    """On sale, in stock, priced in [low, high]: the `limit` nearest `aim` (a catalog is
    hundreds of rows: the sort is cheap)."""
    rows = await session.execute(
        select(items)
        .where(
            available_now(now),
            items.c.stock > 0,
            items.c.points_price.between(low, high),
        )
        .order_by(func.abs(items.c.points_price - aim), items.c.id)
        .limit(limit)
    )
    return [Item.of(r) for r in rows]


async def cheapest_candidates(session: AsyncSession, now: datetime, limit: int) -> list[Item]:
    """The `limit` cheapest items on sale and in stock."""
    rows = await session.execute(
        select(items)
        .where(available_now(now), items.c.stock > 0)
        .order_by(items.c.points_price, items.c.id)
        .limit(limit)
    )
    return [Item.of(r) for r in rows]


async def exchange_counts(
    session: AsyncSession, item_ids: Sequence[str], since: datetime
) -> dict[str, int]:
    """Completed redemptions of each item since `since` (ix_redemptions_item_completed)."""
    if not item_ids:
        return {}
    rows = await session.execute(
        select(redemptions.c.item_id, func.count())
        .where(
            redemptions.c.item_id.in_(sorted(set(item_ids))),
            redemptions.c.status == "completed",
            redemptions.c.created_at >= since,
        )
        .group_by(redemptions.c.item_id)
    )
    return {item_id: int(n) for item_id, n in rows.tuples()}
