"""Reports over every account: finance's liability, the reconciliation, and the pages the
notifier and insights read (points expiring in a window, holders of an asset)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger import repository as repo
from services.rewards_ledger.repository.rows import KindFlow
from services.rewards_ledger.service.assets import assets_of


def _month_starts(now: datetime, tz: tzinfo, count: int) -> list[datetime]:
    local = now.astimezone(tz)
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    months = []
    for _ in range(count + 1):
        months.append(first)
        first = (first + timedelta(days=32)).replace(day=1)
    return months


async def liability_report(
    session: AsyncSession, asset: str, now: datetime, tz: tzinfo
) -> dict[str, Any]:
    """What the ledger owes in one asset: outstanding, pending and debt now, what expires in
    each of the next 12 months (business timezone), and the last 30 days' movements."""
    await assets_of(session, [asset])
    months = _month_starts(now, tz, 12)
    since = now - timedelta(days=30)
    totals, by_month, flows = await repo.liability(session, asset, now, months[-1], since, str(tz))
    nothing = KindFlow(0, 0, 0)

    def moved(k: str, field: str = "amount") -> int:
        return int(getattr(flows.get(k, nothing), field))

    return {
        "asset": asset,
        "as_of": now,
        "outstanding": totals.outstanding,
        "held": totals.held,
        "pending": totals.pending,
        "debt": totals.debt,
        "holders": totals.holders,
        "expiring_by_month": [
            {"month": m.strftime("%Y-%m"), "points": by_month.get(m.strftime("%Y-%m"), 0)}
            for m in months[:-1]
        ],
        "last_30_days": {
            "since": since,
            "issued": moved("credit") + moved("adjustment") + moved("pending", "pending"),
            "released": moved("release"),
            "spent": -(moved("debit") + moved("extension") + moved("refund")),
            "expired": -moved("expire"),
            "clawed_back": -(moved("clawback") + moved("clawback", "pending"))
            + moved("clawback", "debt"),
            "debt_repaid": -moved("debt_repaid", "debt"),
        },
    }


async def reconcile(session: AsyncSession) -> dict[str, Any]:
    checked, failures = await repo.run_reconciliation(session)
    violations = [{"check": name, "rows": rows} for name, rows in failures.items()]
    return {
        "ok": not violations,
        "accounts_checked": checked,
        "checks": list(repo.RECONCILIATION_CHECKS),
        "violations": violations,
        "checked_at": datetime.now(UTC),
    }


async def expiring_page(
    session: AsyncSession,
    asset: str,
    start: datetime,
    end: datetime,
    after: tuple[str, datetime] | None,
    limit: int,
) -> dict[str, Any]:
    """Points in active lots expiring in [start, end), per user and expiry instant, a page
    after `after` (user_id, expires_at); `next` is set when the page is full."""
    after_user, after_at = after if after is not None else ("", start.replace(year=1))
    rows = await repo.expiring_lots_page(session, asset, start, end, after_user, after_at, limit)
    items = [{"user_id": r[0], "expires_at": r[1], "points": int(r[2])} for r in rows]
    last = items[-1] if len(items) == limit else None
    return {
        "items": items,
        "next": {"user_id": last["user_id"], "expires_at": last["expires_at"]} if last else None,
    }


async def holders_page(
    session: AsyncSession, asset: str, min_balance: int, after: str, limit: int
) -> dict[str, Any]:
    """Users whose available balance of `asset` is over `min_balance`, after `after` in
    user_id order; `next` is set when the page is full."""
    rows = await repo.holders_page(session, asset, min_balance, after, limit)
    items = [{"user_id": r[0], "balance": int(r[1])} for r in rows]
    return {"items": items, "next": items[-1]["user_id"] if len(items) == limit else None}
