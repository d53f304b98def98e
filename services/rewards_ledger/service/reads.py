"""Reads of one user's accounts: an account with what expires soon, every balance, history."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger import repository as repo
from services.rewards_ledger.domain import DEFAULT_ASSET
from services.rewards_ledger.service.assets import assets_of
from services.rewards_ledger.service.extensions import extended_lots


async def account_view(
    session: AsyncSession,
    user_id: str,
    now: datetime,
    soon_days: int,
    asset: str = DEFAULT_ASSET,
) -> dict[str, Any]:
    if asset != DEFAULT_ASSET:
        await assets_of(session, [asset])
    account = await repo.totals_of(session, user_id, asset)
    horizon = now + timedelta(days=soon_days)
    upcoming = await repo.upcoming_expiries(session, user_id, asset, now, horizon)
    pending = (
        await repo.pending_lots_of(session, user_id, asset) if account and account.pending else []
    )
    week = now + timedelta(days=7)
    return {
        "user_id": user_id,
        "asset": asset,
        # available: the points open holds reserve are shown apart
        "balance": account.balance - account.held if account else 0,
        "held": account.held if account else 0,
        "pending": account.pending if account else 0,
        "debt": account.debt if account else 0,
        "expiring_within_7_days": sum(r.points for r in upcoming if r.first <= week),
        "expiring_within_30_days": sum(r.points for r in upcoming),
        "expiring_soon": [
            {"date": r.first.date().isoformat(), "expires_at": r.first, "points": r.points}
            for r in upcoming
        ],
        "pending_lots": [
            {"lot_id": r.id, "points": r.remaining, "available_at": r.available_at} for r in pending
        ],
        "updated_at": account.updated_at if account else None,
    }


async def balances(session: AsyncSession, user_id: str) -> dict[str, Any]:
    """Every asset the ledger knows, with what this user holds of it."""
    held = await repo.accounts_of_user(session, user_id)
    items = []
    for asset in await repo.all_assets(session):
        row = held.get(asset.code)
        items.append(
            {
                "asset": asset.code,
                "name": asset.name,
                "spendable": asset.spendable,
                "balance": row.balance - row.held if row else 0,
                "held": row.held if row else 0,
                "pending": row.pending if row else 0,
                "debt": row.debt if row else 0,
            }
        )
    return {"user_id": user_id, "items": items}


ALLOCATED_KINDS = ("debit", "refund", "clawback", "debt_repaid", "extension")


async def history(
    session: AsyncSession,
    user_id: str,
    limit: int,
    before_id: int | None,
    asset: str = DEFAULT_ASSET,
) -> dict[str, Any]:
    rows = await repo.entries_page(session, user_id, asset, limit + 1, before_id)
    page, more = rows[:limit], len(rows) > limit
    allocs = await repo.allocations_of(session, [r.id for r in page if r.kind in ALLOCATED_KINDS])
    items = []
    for r in page:
        extended = await extended_lots(session, r.id) if r.kind == "extension" else []
        items.append({**asdict(r), "allocations": allocs.get(r.id, []), "extended_lots": extended})
    return {"items": items, "next_before_id": page[-1].id if more and page else None}
