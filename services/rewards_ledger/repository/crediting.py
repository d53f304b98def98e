"""SQL of crediting: new lots, and the clawbacks that take granted points back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger.domain import GrantedLot
from services.rewards_ledger.models import clawbacks, lots
from services.rewards_ledger.repository.rows import Clawback, row_as
from shared.bulk import Bulk

LOTS = Bulk(
    "lots",
    {
        "id": "text",
        "user_id": "text",
        "asset": "text",
        "origin": "text",
        "origin_ref": "text",
        "points": "bigint",
        "remaining": "bigint",
        "expires_at": "timestamptz",
        "available_at": "timestamptz",
        "status": "text",
    },
)


_INSERT_LOTS = LOTS.insert()
_INSERT_NEW_LOTS = LOTS.insert("ON CONFLICT (id) DO NOTHING RETURNING id")


async def insert_lots(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_INSERT_LOTS, LOTS.params(rows))


async def insert_new_lots(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    """Insert the lots not there yet; returns their ids. A lot's id comes from its credit's
    idempotency key, so one that exists was credited before; a concurrent transaction
    inserting the same id blocks here until it commits or rolls back (as an inbox would)."""
    if not rows:
        return set()
    return set((await session.execute(_INSERT_NEW_LOTS, LOTS.params(rows))).scalars())


# --- clawbacks ---------------------------------------------------------------------------------


async def record_clawback_targets(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Raise each lot's clawback target (never lower it); rows: lot_id, grant_id, user_id,
    asset, target, reference, reason."""
    if not rows:
        return
    stmt = pg_insert(clawbacks).values(rows)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[clawbacks.c.lot_id],
            set_={
                "target": func.greatest(clawbacks.c.target, stmt.excluded.target),
                "reference": stmt.excluded.reference,
                "reason": stmt.excluded.reason,
                "updated_at": func.now(),
            },
        )
    )


# Only from the account that owns the lot: a clawback naming another is never applied. On the
# credit path of every batch of grants, so one prepared statement whatever the batch size.
_OPEN_CLAWBACKS = text(
    "SELECT c.* FROM clawbacks c JOIN lots l "
    "ON l.id = c.lot_id AND l.user_id = c.user_id AND l.asset = c.asset "
    "WHERE c.lot_id = ANY(CAST(:lots AS text[])) AND c.applied < c.target "
    "ORDER BY c.lot_id FOR UPDATE OF c"
).columns(*clawbacks.c)


async def open_clawbacks(session: AsyncSession, lot_ids: Sequence[str]) -> list[Clawback]:
    """Clawbacks of these lots with something left to reverse whose lot exists, locked."""
    if not lot_ids:
        return []
    rows = await session.execute(_OPEN_CLAWBACKS, {"lots": list(lot_ids)})
    return [row_as(Clawback, r) for r in rows]


async def set_clawback_applied(session: AsyncSession, lot_id: str, applied: int) -> None:
    await session.execute(
        update(clawbacks)
        .where(clawbacks.c.lot_id == lot_id)
        .values(applied=applied, updated_at=func.now())
    )


async def lot_of(session: AsyncSession, lot_id: str) -> GrantedLot | None:
    """A grant's lot as a clawback sees it, locked: `remaining` is what no hold reserves (a
    clawback never takes held points; what it cannot take becomes debt)."""
    result = await session.execute(
        select(lots.c.id, lots.c.status, (lots.c.remaining - lots.c.held).label("remaining"))
        .where(lots.c.id == lot_id)
        .with_for_update()
    )
    row = result.one_or_none()
    return None if row is None else GrantedLot(row.id, row.status, row.remaining)
