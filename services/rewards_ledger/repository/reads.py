"""SQL of one user's reads: totals, what expires soon, pending lots, a page of history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger.models import accounts, journal_entries, lots
from services.rewards_ledger.repository.rows import (
    AccountRow,
    ExpiryDay,
    JournalEntry,
    PendingLot,
    row_as,
)
from shared.db import inline


async def totals_of(session: AsyncSession, user_id: str, asset: str) -> AccountRow | None:
    result = await session.execute(
        select(accounts).where(accounts.c.user_id == user_id, accounts.c.asset == asset)
    )
    row = result.one_or_none()
    return None if row is None else row_as(AccountRow, row)


async def accounts_of_user(session: AsyncSession, user_id: str) -> dict[str, AccountRow]:
    rows = await session.execute(select(accounts).where(accounts.c.user_id == user_id))
    return {r.asset: row_as(AccountRow, r) for r in rows}


async def upcoming_expiries(
    session: AsyncSession, user_id: str, asset: str, now: datetime, until: datetime
) -> list[ExpiryDay]:
    """The account's points expiring in (now, until], by day, earliest first. Points an open
    hold reserves are not counted: they do not expire while held."""
    rows = await session.execute(
        select(
            func.date_trunc("day", lots.c.expires_at).label("day"),
            func.sum(lots.c.remaining - lots.c.held).label("points"),
            func.min(lots.c.expires_at).label("first"),
        )
        .where(
            lots.c.user_id == user_id,
            lots.c.asset == asset,
            lots.c.status == inline("active"),
            lots.c.remaining > inline(0),
            lots.c.remaining > lots.c.held,
            lots.c.expires_at > now,
            lots.c.expires_at <= until,
        )
        .group_by(text("1"))
        .order_by(text("1"))
    )
    return [ExpiryDay(r.day, int(r.points), r.first) for r in rows]


async def entries_page(
    session: AsyncSession, user_id: str, asset: str, limit: int, before_id: int | None
) -> list[JournalEntry]:
    conditions = [journal_entries.c.user_id == user_id, journal_entries.c.asset == asset]
    if before_id is not None:
        conditions.append(journal_entries.c.id < before_id)
    rows = await session.execute(
        select(journal_entries)
        .where(and_(*conditions))
        .order_by(journal_entries.c.id.desc())
        .limit(limit)
    )
    return [row_as(JournalEntry, r) for r in rows]


async def pending_lots_of(session: AsyncSession, user_id: str, asset: str) -> list[PendingLot]:
    rows = await session.execute(
        select(lots.c.id, lots.c.remaining, lots.c.available_at, lots.c.origin_ref)
        .where(
            lots.c.user_id == user_id,
            lots.c.asset == asset,
            lots.c.status == inline("pending"),
            lots.c.remaining > inline(0),
        )
        .order_by(lots.c.available_at, lots.c.id)
    )
    return [row_as(PendingLot, r) for r in rows]
