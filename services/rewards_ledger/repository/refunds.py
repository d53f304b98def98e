"""SQL of refunds: voided debit keys, and points given back to the lots they came from."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger.models import debit_voids, journal_entries, lots
from services.rewards_ledger.repository.rows import DebitVoid, JournalEntry, row_as
from shared.db import inline

_ENTRIES_BY_KEYS = text(
    "SELECT * FROM journal_entries "
    "WHERE idempotency_key = ANY(CAST(:keys AS text[])) AND asset = :asset"
).columns(*journal_entries.c)


async def entries_by_keys(
    session: AsyncSession, keys: Sequence[str], asset: str
) -> list[JournalEntry]:
    if not keys:
        return []
    rows = await session.execute(_ENTRIES_BY_KEYS, {"keys": list(keys), "asset": asset})
    return [row_as(JournalEntry, r) for r in rows]


async def void_of(session: AsyncSession, key: str, asset: str) -> DebitVoid | None:
    result = await session.execute(
        select(debit_voids).where(
            debit_voids.c.idempotency_key == key, debit_voids.c.asset == asset
        )
    )
    row = result.one_or_none()
    return None if row is None else row_as(DebitVoid, row)


async def insert_void(
    session: AsyncSession, key: str, asset: str, user_id: str, reason: str
) -> DebitVoid:
    result = await session.execute(
        insert(debit_voids)
        .values(idempotency_key=key, asset=asset, user_id=user_id, reason=reason)
        .returning(*debit_voids.c)
    )
    return row_as(DebitVoid, result.one())


async def lock_lots(session: AsyncSession, lot_ids: Sequence[str]) -> dict[str, datetime | None]:
    """Lock these lots (in id order); returns each one's expiry."""
    if not lot_ids:
        return {}
    rows = await session.execute(
        select(lots.c.id, lots.c.status, lots.c.remaining, lots.c.expires_at)
        .where(lots.c.id.in_(list(lot_ids)))
        .order_by(lots.c.id)
        .with_for_update()
    )
    return {r.id: r.expires_at for r in rows}


async def give_back_to_lots(session: AsyncSession, given: Sequence[tuple[str, int]]) -> None:
    if given:
        await session.execute(
            update(lots)
            .where(lots.c.id == bindparam("lot_id"))
            .values(remaining=lots.c.remaining + bindparam("given")),
            [{"lot_id": lot_id, "given": pts} for lot_id, pts in given],
        )


async def mark_lots_expired(session: AsyncSession, lot_ids: Sequence[str]) -> None:
    """Close lots whose date has passed without touching what is left in them (nothing is,
    unless an open hold reserves it: such a lot stays active until the hold lets go)."""
    if lot_ids:
        await session.execute(
            update(lots)
            .where(lots.c.id.in_(list(lot_ids)), lots.c.held == inline(0))
            .values(status="expired")
        )
