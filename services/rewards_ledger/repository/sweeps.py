"""SQL of the sweeps: accounts with lots past due or due for release, and releasing them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger.domain import Account
from services.rewards_ledger.models import lots
from services.rewards_ledger.repository.rows import ReleasableLot, row_as
from shared.db import inline


async def accounts_with_due_lots(session: AsyncSession, now: datetime, limit: int) -> list[Account]:
    rows = await session.execute(
        select(lots.c.user_id, lots.c.asset)
        .where(
            lots.c.status == inline("active"),
            lots.c.remaining > inline(0),  # the partial index's condition
            lots.c.remaining > lots.c.held,  # held points do not expire while held
            lots.c.expires_at <= now,
        )
        .group_by(lots.c.user_id, lots.c.asset)
        .order_by(func.min(lots.c.expires_at))
        .limit(limit)
    )
    return [(r.user_id, r.asset) for r in rows]


# --- release of pending lots -------------------------------------------------------------------


async def accounts_with_releasable_lots(
    session: AsyncSession, now: datetime, limit: int
) -> list[Account]:
    rows = await session.execute(
        select(lots.c.user_id, lots.c.asset)
        .where(
            lots.c.status == inline("pending"),
            lots.c.remaining > inline(0),
            lots.c.available_at <= now,
        )
        .group_by(lots.c.user_id, lots.c.asset)
        .order_by(func.min(lots.c.available_at))
        .limit(limit)
    )
    return [(r.user_id, r.asset) for r in rows]


async def releasable_lots(
    session: AsyncSession, keys: Sequence[Account], now: datetime
) -> list[ReleasableLot]:
    """Pending lots of these (locked) accounts whose available_at has come, locked."""
    if not keys:
        return []
    rows = await session.execute(
        select(lots.c.id, lots.c.user_id, lots.c.asset, lots.c.remaining, lots.c.available_at)
        .where(
            tuple_(lots.c.user_id, lots.c.asset).in_(sorted(set(keys))),
            lots.c.status == inline("pending"),
            lots.c.remaining > inline(0),
            lots.c.available_at <= now,
        )
        .order_by(lots.c.user_id, lots.c.asset, lots.c.available_at, lots.c.id)
        .with_for_update()
    )
    return [row_as(ReleasableLot, r) for r in rows]


async def activate_lots(session: AsyncSession, lot_ids: Sequence[str]) -> None:
    if lot_ids:
        await session.execute(
            update(lots).where(lots.c.id.in_(list(lot_ids))).values(status="active")
        )
