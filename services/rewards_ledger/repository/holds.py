"""SQL of holds: the hold rows and the lots they reserve, closing them, and the deadline sweep.
Every write happens under the hold's account lock (taken first), then the lots'."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger.domain import Account, SpendableLot
from services.rewards_ledger.models import hold_lots, holds, lots
from services.rewards_ledger.repository.rows import HoldRow, row_as
from shared.bulk import Bulk
from shared.db import inline

HELD = Bulk("lots", {"id": "text", "held": "bigint"})
_HOLD_POINTS = HELD.update(["id"], "held = lots.held + v.held")
# A hold letting go of lots: `unheld` is what it reserved of each, `taken` what leaves the lot
# (captured, or released after the lot's expiry, expiring at once). A past-due lot nothing
# reserves any more is closed as expired.
SETTLED = Bulk("lots", {"id": "text", "unheld": "bigint", "taken": "bigint"})
_SETTLE_LOTS = SETTLED.update(
    ["id"],
    "held = lots.held - v.unheld, remaining = lots.remaining - v.taken, "
    "status = CASE WHEN lots.expires_at <= :now AND lots.held = v.unheld "
    "THEN 'expired' ELSE lots.status END",
)
HOLD_LOTS = Bulk("hold_lots", {"hold_id": "text", "lot_id": "text", "points": "bigint"})
_INSERT_HOLD_LOTS = HOLD_LOTS.insert()


async def hold_of(session: AsyncSession, hold_id: str, *, lock: bool = False) -> HoldRow | None:
    """The hold, locked when `lock` (the caller holds its account's lock first)."""
    stmt = select(holds).where(holds.c.id == hold_id)
    row = (await session.execute(stmt.with_for_update() if lock else stmt)).one_or_none()
    return None if row is None else row_as(HoldRow, row)


async def hold_settled_with(session: AsyncSession, key: str, asset: str) -> HoldRow | None:
    """The hold a capture or void with the caller's `key` closed, if any."""
    row = (
        await session.execute(
            select(holds).where(holds.c.settle_key == key, holds.c.asset == asset)
        )
    ).one_or_none()
    return None if row is None else row_as(HoldRow, row)


async def insert_hold(
    session: AsyncSession, row: dict[str, Any], taken: Sequence[tuple[str, int]]
) -> HoldRow:
    """A new hold and the lots it reserves (`taken`: (lot_id, points), locked by the caller)."""
    created = (await session.execute(insert(holds).values(row).returning(*holds.c))).one()
    await session.execute(
        _INSERT_HOLD_LOTS,
        HOLD_LOTS.params({"hold_id": row["id"], "lot_id": lot, "points": p} for lot, p in taken),
    )
    await session.execute(_HOLD_POINTS, HELD.params({"id": lot, "held": p} for lot, p in taken))
    return row_as(HoldRow, created)


async def held_lots(session: AsyncSession, hold_id: str) -> list[SpendableLot]:
    """The lots a hold reserves points of, locked (in id order): `remaining` is what the hold
    reserves of each."""
    rows = await session.execute(
        select(hold_lots.c.lot_id, hold_lots.c.points, lots.c.expires_at, lots.c.created_at)
        .join(lots, lots.c.id == hold_lots.c.lot_id)
        .where(hold_lots.c.hold_id == hold_id)
        .order_by(hold_lots.c.lot_id)
        .with_for_update(of=lots)
    )
    return [SpendableLot(r.lot_id, r.points, r.expires_at, r.created_at) for r in rows]


async def lots_of_holds(
    session: AsyncSession, hold_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """hold id -> the lots it reserved: lot_id, points, expires_at (earliest expiry first)."""
    if not hold_ids:
        return {}
    rows = await session.execute(
        select(hold_lots.c.hold_id, hold_lots.c.lot_id, hold_lots.c.points, lots.c.expires_at)
        .join(lots, lots.c.id == hold_lots.c.lot_id)
        .where(hold_lots.c.hold_id.in_(list(hold_ids)))
        .order_by(hold_lots.c.hold_id, lots.c.expires_at.nulls_last(), lots.c.id)
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r.hold_id, []).append(
            {"lot_id": r.lot_id, "points": r.points, "expires_at": r.expires_at}
        )
    return out


async def settle_lots(
    session: AsyncSession, moves: Sequence[tuple[str, int, int]], now: datetime
) -> None:
    """(lot_id, unheld, taken) moves of a hold closing (its lots locked)."""
    if moves:
        await session.execute(
            _SETTLE_LOTS,
            {
                **SETTLED.params({"id": lot, "unheld": u, "taken": t} for lot, u, t in moves),
                "now": now,
            },
        )


async def close_hold(session: AsyncSession, hold_id: str, **values: Any) -> None:
    """Close an open hold: status, captured, settle_key, closed_by, settle_entry_id,
    closed_at. Only an open hold changes (the status moves once)."""
    closed = await session.execute(
        update(holds)
        .where(holds.c.id == hold_id, holds.c.status == inline("open"))
        .values(**values)
        .returning(holds.c.id)
    )
    assert closed.one_or_none() is not None, f"hold {hold_id} was not open"


async def accounts_with_due_holds(
    session: AsyncSession, now: datetime, limit: int
) -> list[Account]:
    rows = await session.execute(
        select(holds.c.user_id, holds.c.asset)
        .where(holds.c.status == inline("open"), holds.c.expires_at <= now)
        .group_by(holds.c.user_id, holds.c.asset)
        .order_by(func.min(holds.c.expires_at))
        .limit(limit)
    )
    return [(r.user_id, r.asset) for r in rows]


async def due_holds(session: AsyncSession, keys: Sequence[Account], now: datetime) -> list[HoldRow]:
    """Open holds of these (locked) accounts past their deadline, locked, oldest first."""
    if not keys:
        return []
    rows = await session.execute(
        select(holds)
        .where(
            tuple_(holds.c.user_id, holds.c.asset).in_(sorted(set(keys))),
            holds.c.status == inline("open"),
            holds.c.expires_at <= now,
        )
        .order_by(holds.c.expires_at, holds.c.id)
        .with_for_update()
    )
    return [row_as(HoldRow, r) for r in rows]


async def holds_of(
    session: AsyncSession, user_id: str, asset: str, status: str | None, limit: int
) -> list[HoldRow]:
    """A user's holds of one asset, newest first (`status`: only those)."""
    stmt = select(holds).where(holds.c.user_id == user_id, holds.c.asset == asset)
    if status is not None:
        stmt = stmt.where(holds.c.status == status)
    rows = await session.execute(stmt.order_by(holds.c.created_at.desc(), holds.c.id).limit(limit))
    return [row_as(HoldRow, r) for r in rows]


# --- reconciliation ----------------------------------------------------------------------------

# Part of RECONCILIATION_CHECKS (reports.py): each query returns the rows that fail.
HOLD_CHECKS: dict[str, str] = {
    # an account's held points are its open holds', and what its lots hold for them
    "held_matches_open_holds": """
        SELECT a.user_id, a.asset, a.held, COALESCE(h.open, 0) AS open_holds,
               COALESCE(l.held, 0) AS held_in_lots
        FROM accounts a
        LEFT JOIN (SELECT user_id, asset, sum(points) AS open FROM holds
                   WHERE status = 'open' GROUP BY user_id, asset) h
               ON h.user_id = a.user_id AND h.asset = a.asset
        LEFT JOIN (SELECT user_id, asset, sum(held) AS held FROM lots
                   GROUP BY user_id, asset) l
               ON l.user_id = a.user_id AND l.asset = a.asset
        WHERE a.held <> COALESCE(h.open, 0) OR a.held <> COALESCE(l.held, 0)
        LIMIT 100""",
    # a lot holds what the open holds reserved of it, and only an active lot holds anything
    "lots_held_match_open_holds": """
        SELECT l.id, l.user_id, l.status, l.held, COALESCE(h.held, 0) AS open_holds
        FROM lots l
        LEFT JOIN (SELECT hl.lot_id, sum(hl.points) AS held FROM hold_lots hl
                   JOIN holds h ON h.id = hl.hold_id WHERE h.status = 'open'
                   GROUP BY hl.lot_id) h ON h.lot_id = l.id
        WHERE l.held <> COALESCE(h.held, 0) OR (l.held > 0 AND l.status <> 'active')
        LIMIT 100""",
    # a hold reserved exactly its points, and its capture took only what it reserved
    "holds_reserve_their_points": """
        SELECT h.id, h.points, COALESCE(r.reserved, 0) AS reserved, NULL AS lot_id
        FROM holds h
        LEFT JOIN (SELECT hold_id, sum(points) AS reserved FROM hold_lots GROUP BY hold_id) r
               ON r.hold_id = h.id
        WHERE COALESCE(r.reserved, 0) <> h.points
        UNION ALL
        SELECT h.id, al.points, hl.points, al.lot_id
        FROM holds h
        JOIN allocations al ON al.journal_entry_id = h.settle_entry_id
        LEFT JOIN hold_lots hl ON hl.hold_id = h.id AND hl.lot_id = al.lot_id
        WHERE h.status = 'captured' AND (hl.points IS NULL OR al.points > hl.points)
        LIMIT 100""",
    # placed by a hold entry; captured holds equal their debit (the rest released in it),
    # voided ones their void entry
    "holds_match_their_entries": """
        SELECT h.id, h.status, h.points, h.captured, p.kind AS placed_by,
               p.held_delta AS placed, s.kind AS closed_by, s.amount AS closing_amount,
               s.held_delta AS closing_held
        FROM holds h
        LEFT JOIN journal_entries p ON p.id = h.entry_id
        LEFT JOIN journal_entries s ON s.id = h.settle_entry_id
        WHERE p.kind IS DISTINCT FROM 'hold' OR p.amount <> 0 OR p.held_delta <> h.points
           OR p.user_id <> h.user_id OR p.asset <> h.asset
           OR p.idempotency_key <> 'hold:' || h.idempotency_key
           OR (h.status = 'open') <> (s.id IS NULL)
           OR s.user_id <> h.user_id OR s.asset <> h.asset
           OR (h.status = 'captured' AND (s.kind <> 'debit' OR s.amount <> -h.captured
               OR s.held_delta <> -h.points OR s.idempotency_key <> 'debit:' || h.settle_key))
           OR (h.status = 'voided' AND (s.kind <> 'hold_void' OR s.amount <> 0
               OR s.held_delta <> -h.points OR s.idempotency_key <> 'hold_void:' || h.id))
        LIMIT 100""",
    # every held movement of the journal belongs to a hold, and no hold is closed twice
    # (captured and voided)
    "holds_closed_once": """
        SELECT je.id AS entry_id, je.kind, je.held_delta, NULL AS hold_id, NULL AS status
        FROM journal_entries je
        LEFT JOIN holds hp ON hp.entry_id = je.id
        LEFT JOIN holds hs ON hs.settle_entry_id = je.id
        WHERE je.held_delta <> 0 AND hp.id IS NULL AND hs.id IS NULL
        UNION ALL
        SELECT v.id, v.kind, v.held_delta, h.id, h.status
        FROM holds h
        JOIN journal_entries v ON v.idempotency_key = 'hold_void:' || h.id AND v.asset = h.asset
        WHERE h.status <> 'voided' OR v.id <> h.settle_entry_id
        LIMIT 100""",
}
