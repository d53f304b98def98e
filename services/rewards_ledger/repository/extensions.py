"""SQL of extensions (积分延期): the lots that may be extended, and extending them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger.domain import ExtendableLot
from services.rewards_ledger.models import lot_extensions, lots
from services.rewards_ledger.repository.rows import LotExtension, row_as
from shared.db import inline


async def extendable_lots(session: AsyncSession, user_id: str, asset: str) -> list[ExtendableLot]:
    """Active lots of a (locked) account with points no hold reserves (`remaining`: that
    part, which pays the fee or is extended), each with whether it was extended."""
    rows = await session.execute(
        select(
            lots.c.id,
            (lots.c.remaining - lots.c.held).label("remaining"),
            lots.c.expires_at,
            lots.c.created_at,
            lot_extensions.c.lot_id.is_not(None).label("extended"),
        )
        .outerjoin(lot_extensions, lot_extensions.c.lot_id == lots.c.id)
        .where(
            lots.c.user_id == user_id,
            lots.c.asset == asset,
            lots.c.status == inline("active"),
            lots.c.remaining > inline(0),
            lots.c.remaining > lots.c.held,
        )
        .order_by(lots.c.id)
        .with_for_update(of=lots)
    )
    return [ExtendableLot(r.id, r.remaining, r.expires_at, r.created_at, r.extended) for r in rows]


async def extend_lots(
    session: AsyncSession, entry_id: int, extended: Sequence[tuple[str, datetime, datetime]]
) -> None:
    if not extended:
        return
    await session.execute(
        insert(lot_extensions),
        [
            {
                "lot_id": lot,
                "journal_entry_id": entry_id,
                "old_expires_at": old,
                "new_expires_at": new,
            }
            for lot, old, new in extended
        ],
    )
    await session.execute(
        update(lots)
        .where(lots.c.id == bindparam("lot"))
        .values(expires_at=bindparam("new_expiry")),
        [{"lot": lot, "new_expiry": new} for lot, _, new in extended],
    )


async def extensions_of(session: AsyncSession, entry_id: int) -> list[LotExtension]:
    rows = await session.execute(
        select(lot_extensions, lots.c.remaining)
        .join(lots, lots.c.id == lot_extensions.c.lot_id)
        .where(lot_extensions.c.journal_entry_id == entry_id)
        .order_by(lot_extensions.c.old_expires_at, lot_extensions.c.lot_id)
    )
    return [row_as(LotExtension, r) for r in rows]
