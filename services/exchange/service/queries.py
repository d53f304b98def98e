"""Reads: a redemption, a user's redemptions, the reconciliation (quick options:
`quick_options.py`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange import repository as repo
from services.exchange.schemas import RedemptionOut, RedemptionsPage
from shared.auth import Principal
from shared.errors import NotFound


async def get_redemption(
    session: AsyncSession, redemption_id: str, caller: Principal
) -> RedemptionOut:
    """One redemption, for its owner, the admin or the console (exchange:read)."""
    row = await repo.get_redemption(session, redemption_id)
    if row is None:
        raise NotFound("redemption", redemption_id)
    caller.require_user_or_scope(row.user_id, "exchange:read")
    return RedemptionOut.model_validate(row)


async def user_redemptions(
    session: AsyncSession, user_id: str, status: str | None, limit: int, offset: int
) -> RedemptionsPage:
    """A page of a user's redemptions, newest first."""
    rows = await repo.user_redemptions(session, user_id, status, limit + 1, offset)
    return RedemptionsPage(
        items=[RedemptionOut.model_validate(r) for r in rows[:limit]],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if len(rows) > limit else None,
    )


async def reconcile(session: AsyncSession, pending_deadline_s: float) -> dict[str, Any]:
    """Every unit of stock accounted for; limits, rewards and debits consistent (run it in
    one snapshot)."""
    stuck_before = datetime.now(UTC) - timedelta(seconds=pending_deadline_s * 2 + 600)
    counts, failures = await repo.run_reconciliation(session, stuck_before)
    return {
        "ok": not failures,
        "redemptions": counts,
        "checks": [*repo.RECONCILIATION_CHECKS, "nothing_unfinished_for_long"],
        "violations": [{"check": k, "rows": v} for k, v in failures.items()],
        "checked_at": datetime.now(UTC),
    }
