"""The reconciliation checks: every unit of stock accounted for; limits, rewards and debits
consistent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange.models import redemptions
from shared.db import inline, violations

RECONCILIATION_CHECKS: dict[str, str] = {
    "stock_accounts_for_every_unit": """
        SELECT i.id, i.stock, i.stock_total, COALESCE(r.held, 0) AS held
        FROM items i
        LEFT JOIN (SELECT item_id, sum(quantity) AS held FROM redemptions
                   WHERE holds_stock GROUP BY item_id) r ON r.item_id = i.id
        WHERE i.stock + COALESCE(r.held, 0) <> i.stock_total
        LIMIT 100""",
    "units_held_only_by_live_redemptions": """
        SELECT id, status, holds_stock FROM redemptions
        WHERE holds_stock <> (status IN ('pending', 'completed', 'cancelling'))
        LIMIT 100""",
    "limit_counters_match_redemptions": """
        SELECT c.user_id, c.item_id, c.period_key, c.quantity, COALESCE(r.held, 0) AS held
        FROM purchase_counters c
        LEFT JOIN (SELECT user_id, item_id, limit_period_key, sum(quantity) AS held
                   FROM redemptions WHERE holds_stock AND limit_period_key IS NOT NULL
                   GROUP BY user_id, item_id, limit_period_key) r
               ON r.user_id = c.user_id AND r.item_id = c.item_id
              AND r.limit_period_key = c.period_key
        WHERE c.quantity <> COALESCE(r.held, 0)
        LIMIT 100""",
    "completed_redemptions_have_their_reward": """
        SELECT id, item_type, status FROM redemptions
        WHERE status IN ('completed', 'cancelling', 'cancelled') AND reward IS NULL
        LIMIT 100""",
    "coupons_issued_once_per_unit": """
        SELECT r.id, r.quantity, count(c.code) AS coupons
        FROM redemptions r LEFT JOIN coupons c ON c.redemption_id = r.id
        WHERE r.item_type = 'coupon' AND r.reward IS NOT NULL
        GROUP BY r.id, r.quantity
        HAVING count(c.code) <> r.quantity
        LIMIT 100""",
    "completed_redemptions_were_debited": """
        SELECT id, status FROM redemptions
        WHERE status IN ('completed', 'cancelling', 'cancelled') AND ledger_entry_id IS NULL
        LIMIT 100""",
}


async def run_reconciliation(
    session: AsyncSession, stuck_before: datetime
) -> tuple[dict[str, int], dict[str, list[dict[str, Any]]]]:
    failures = await violations(session, RECONCILIATION_CHECKS)
    stuck = (
        (
            await session.execute(
                select(redemptions.c.id, redemptions.c.status, redemptions.c.created_at)
                .where(
                    redemptions.c.status.in_([inline("pending"), inline("cancelling")]),
                    redemptions.c.updated_at < stuck_before,
                )
                .limit(100)
            )
        )
        .mappings()
        .all()
    )
    if stuck:
        failures["nothing_unfinished_for_long"] = [dict(r) for r in stuck]
    counts = {
        r.status: int(r.n)
        for r in await session.execute(
            select(redemptions.c.status, func.count().label("n")).group_by(redemptions.c.status)
        )
    }
    return counts, failures
