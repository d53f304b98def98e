"""SQL of the reports over every account: liability, reconciliation checks, points
expiring in a window, holders of an asset."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger.models import accounts
from services.rewards_ledger.repository.holds import HOLD_CHECKS
from services.rewards_ledger.repository.rows import AssetTotals, KindFlow
from shared.db import violations

# --- liability ---------------------------------------------------------------------------------

_LIABILITY_TOTALS = text(
    "SELECT COALESCE(sum(balance), 0) AS outstanding, COALESCE(sum(pending), 0) AS pending, "
    "COALESCE(sum(debt), 0) AS debt, COALESCE(sum(held), 0) AS held, "
    "count(*) FILTER (WHERE balance > 0) AS holders "
    "FROM accounts WHERE asset = :asset"
)
# A lot counts in the month of its last valid instant: one valid to a month's (or a year's)
# end expires at the next month's first midnight, and belongs to the month it was valid in.
_LIABILITY_EXPIRING = text(
    "SELECT to_char((expires_at - interval '1 microsecond') AT TIME ZONE :tz, 'YYYY-MM') "
    "AS month, sum(remaining) AS points FROM lots "
    "WHERE status = 'active' AND remaining > 0 AND asset = :asset "
    "AND expires_at > :now AND expires_at <= :until GROUP BY 1 ORDER BY 1"
)
_LIABILITY_FLOWS = text(
    "SELECT kind, COALESCE(sum(amount), 0) AS amount, COALESCE(sum(pending_delta), 0) AS pending, "
    "COALESCE(sum(debt_delta), 0) AS debt FROM journal_entries "
    "WHERE asset = :asset AND created_at >= :since GROUP BY kind"
)


async def liability(
    session: AsyncSession, asset: str, now: datetime, until: datetime, since: datetime, tz: str
) -> tuple[AssetTotals, dict[str, int], dict[str, KindFlow]]:
    """(totals over the asset's accounts, points expiring by month ("YYYY-MM" in `tz`) until
    `until`, the journal's movements by kind since `since`): set-based, whatever the number
    of rows."""
    t = (await session.execute(_LIABILITY_TOTALS, {"asset": asset})).one()
    totals = AssetTotals(
        int(t.outstanding), int(t.pending), int(t.debt), int(t.held), int(t.holders)
    )
    expiring = await session.execute(
        _LIABILITY_EXPIRING, {"asset": asset, "now": now, "until": until, "tz": tz}
    )
    flows = await session.execute(_LIABILITY_FLOWS, {"asset": asset, "since": since})
    return (
        totals,
        {r.month: int(r.points) for r in expiring},
        {r.kind: KindFlow(int(r.amount), int(r.pending), int(r.debt)) for r in flows},
    )


# --- reconciliation ----------------------------------------------------------------------------

# The kinds whose allocations take points out of lots (a refund's give them back).
_TAKING_KINDS = "('debit', 'clawback', 'debt_repaid', 'extension')"

RECONCILIATION_CHECKS: dict[str, str] = {
    "balance_matches_lots": """
        SELECT a.user_id, a.asset, a.balance, a.pending, COALESCE(l.active, 0) AS active_lots,
               COALESCE(l.pending, 0) AS pending_lots
        FROM accounts a
        LEFT JOIN (SELECT user_id, asset,
                          sum(remaining) FILTER (WHERE status = 'active') AS active,
                          sum(remaining) FILTER (WHERE status = 'pending') AS pending
                   FROM lots GROUP BY user_id, asset) l
               ON l.user_id = a.user_id AND l.asset = a.asset
        WHERE a.balance <> COALESCE(l.active, 0) OR a.pending <> COALESCE(l.pending, 0)
        LIMIT 100""",
    "balance_matches_journal": """
        SELECT a.user_id, a.asset, a.balance, a.pending, a.debt, a.held,
               j.balance AS journal_balance, j.pending AS journal_pending,
               j.debt AS journal_debt, j.held AS journal_held
        FROM accounts a
        LEFT JOIN (SELECT user_id, asset, sum(amount) AS balance, sum(pending_delta) AS pending,
                          sum(debt_delta) AS debt, sum(held_delta) AS held
                   FROM journal_entries GROUP BY user_id, asset) j
               ON j.user_id = a.user_id AND j.asset = a.asset
        WHERE a.balance <> COALESCE(j.balance, 0) OR a.pending <> COALESCE(j.pending, 0)
           OR a.debt <> COALESCE(j.debt, 0) OR a.held <> COALESCE(j.held, 0)
        LIMIT 100""",
    "balance_matches_last_entry": """
        SELECT a.user_id, a.asset, a.balance, last.balance_after
        FROM accounts a
        JOIN LATERAL (SELECT balance_after FROM journal_entries je
                      WHERE je.user_id = a.user_id AND je.asset = a.asset
                      ORDER BY id DESC LIMIT 1) last ON true
        WHERE a.balance <> last.balance_after
        LIMIT 100""",
    "journal_running_balance": """
        SELECT user_id, asset, id, balance_after, running FROM (
            SELECT user_id, asset, id, balance_after,
                   sum(amount) OVER (PARTITION BY user_id, asset ORDER BY id) AS running
            FROM journal_entries) t
        WHERE balance_after <> running
        LIMIT 100""",
    "no_negative_amounts": """
        SELECT user_id, asset, balance, pending, debt FROM accounts
        WHERE balance < 0 OR pending < 0 OR debt < 0
        UNION ALL SELECT user_id, asset, remaining, 0, 0 FROM lots WHERE remaining < 0
        LIMIT 100""",
    "debt_only_while_nothing_is_available": """
        SELECT user_id, asset, balance, held, debt FROM accounts
        WHERE debt > 0 AND balance - held > 0
        LIMIT 100""",
    "non_spendable_assets_never_spent": """
        SELECT je.id, je.user_id, je.asset, je.kind FROM journal_entries je
        JOIN assets s ON s.code = je.asset
        WHERE NOT s.spendable AND je.kind IN ('debit', 'extension')
        LIMIT 100""",
    "takings_fully_allocated": f"""
        SELECT je.id, je.user_id, je.kind, je.amount, je.pending_delta,
               COALESCE(sum(al.points), 0) AS allocated
        FROM journal_entries je LEFT JOIN allocations al ON al.journal_entry_id = je.id
        WHERE je.kind IN {_TAKING_KINDS}
        GROUP BY je.id, je.user_id, je.kind, je.amount, je.pending_delta
        HAVING -(je.amount + je.pending_delta) <> COALESCE(sum(al.points), 0)
        LIMIT 100""",
    "refunds_fully_allocated": """
        SELECT je.id, je.user_id, je.amount, COALESCE(sum(al.points), 0) AS allocated
        FROM journal_entries je LEFT JOIN allocations al ON al.journal_entry_id = je.id
        WHERE je.kind = 'refund'
        GROUP BY je.id, je.user_id, je.amount
        HAVING je.amount <> COALESCE(sum(al.points), 0)
        LIMIT 100""",
    "refunds_match_their_debit": """
        SELECT r.id, r.user_id, r.amount, d.id AS debit_id, d.amount AS debit_amount
        FROM journal_entries r
        LEFT JOIN journal_entries d
               ON d.idempotency_key = 'debit:' || substr(r.idempotency_key, length('refund:') + 1)
              AND d.asset = r.asset
        WHERE r.kind = 'refund' AND (d.id IS NULL OR d.user_id <> r.user_id
                                     OR d.amount <> -r.amount)
        LIMIT 100""",
    "refund_restores_the_lots_debited": """
        SELECT r.id AS refund_id, ra.lot_id, ra.points, da.points AS debited
        FROM journal_entries r
        JOIN allocations ra ON ra.journal_entry_id = r.id
        JOIN journal_entries d
          ON d.idempotency_key = 'debit:' || substr(r.idempotency_key, length('refund:') + 1)
         AND d.asset = r.asset
        LEFT JOIN allocations da ON da.journal_entry_id = d.id AND da.lot_id = ra.lot_id
        WHERE r.kind = 'refund' AND ra.points IS DISTINCT FROM da.points
        LIMIT 100""",
    "no_debit_after_its_void": """
        SELECT v.idempotency_key, v.asset, je.id
        FROM debit_voids v JOIN journal_entries je
          ON je.idempotency_key = v.idempotency_key AND je.asset = v.asset
        LIMIT 100""",
    "clawbacks_match_their_entries": """
        SELECT c.lot_id, c.target, c.applied, COALESCE(j.reversed, 0) AS reversed, l.points
        FROM clawbacks c
        LEFT JOIN lots l ON l.id = c.lot_id
        LEFT JOIN (SELECT lot_id, sum(-amount - pending_delta + debt_delta) AS reversed
                   FROM journal_entries WHERE kind = 'clawback' GROUP BY lot_id) j
               ON j.lot_id = c.lot_id
        WHERE c.applied <> COALESCE(j.reversed, 0) OR c.applied > COALESCE(l.points, 0)
        LIMIT 100""",
    # what a lot holds for open holds is part of its remaining (and of the account's balance)
    "lots_account_for_their_points": """
        SELECT l.id, l.user_id, l.points, l.remaining, l.held, COALESCE(al.used, 0) AS used,
               COALESCE(ex.expired, 0) AS expired
        FROM lots l
        LEFT JOIN (SELECT al.lot_id,
                          sum(CASE WHEN je.kind = 'refund' THEN -al.points ELSE al.points END)
                              AS used
                   FROM allocations al JOIN journal_entries je ON je.id = al.journal_entry_id
                   GROUP BY al.lot_id) al
               ON al.lot_id = l.id
        LEFT JOIN (SELECT lot_id, -sum(amount) AS expired FROM journal_entries
                   WHERE kind = 'expire' GROUP BY lot_id) ex ON ex.lot_id = l.id
        WHERE l.points <> l.remaining + COALESCE(al.used, 0) + COALESCE(ex.expired, 0)
           OR l.held < 0 OR l.held > l.remaining
        LIMIT 100""",
    **HOLD_CHECKS,
}


async def run_reconciliation(session: AsyncSession) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    accounts_checked = int(
        (await session.execute(select(func.count()).select_from(accounts))).scalar_one()
    )
    return accounts_checked, await violations(session, RECONCILIATION_CHECKS)


# --- reports the notifier and insights read ----------------------------------------------------

# Points still in active lots that expire in a window (what open holds reserve left out), summed per (user, expiry instant), in
# (user_id, expires_at) order, a page at a time. The page walks `ix_lots_spendable` (user_id,
# asset, expires_at) with a keyset, so a scan of the whole window reads each active lot once,
# however many pages it takes, and no page holds a lock: the reader sees one committed
# snapshot per page (a lot spent between two pages is simply not counted any more, which is
# what a reminder wants).
_EXPIRING_PAGE = text(
    """
    SELECT user_id, expires_at, sum(remaining - held) AS points
    FROM lots
    WHERE status = 'active' AND remaining > 0 AND remaining > held
      AND asset = :asset
      AND expires_at >= :start AND expires_at < :end
      AND (user_id, asset, expires_at) > (:after_user, :asset, :after_expires_at)
    GROUP BY user_id, asset, expires_at
    ORDER BY user_id, asset, expires_at
    LIMIT :limit
    """
)


async def expiring_lots_page(
    session: AsyncSession,
    asset: str,
    start: datetime,
    end: datetime,
    after_user: str,
    after_expires_at: datetime,
    limit: int,
) -> list[Any]:
    """(user_id, expires_at, points) rows after (after_user, after_expires_at)."""
    result = await session.execute(
        _EXPIRING_PAGE,
        {
            "asset": asset,
            "start": start,
            "end": end,
            "after_user": after_user,
            "after_expires_at": after_expires_at,
            "limit": limit,
        },
    )
    return list(result.all())


_HOLDERS = text(
    """
    SELECT user_id, balance FROM accounts
    WHERE asset = :asset AND balance > :min_balance AND user_id > :after
    ORDER BY user_id
    LIMIT :limit
    """
)


async def holders_page(
    session: AsyncSession, asset: str, min_balance: int, after: str, limit: int
) -> list[Any]:
    """(user_id, balance) rows of the accounts holding more than `min_balance`, after `after`
    in user_id order (the accounts' primary key order)."""
    result = await session.execute(
        _HOLDERS, {"asset": asset, "min_balance": min_balance, "after": after, "limit": limit}
    )
    return list(result.all())
