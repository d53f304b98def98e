"""The catalog's SQL: items, their stock (moved only through conditional updates) and the
per-user limit counters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, and_, func, insert, or_, select, text, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange.domain import CatalogQuery, unavailable_reason
from services.exchange.models import items, purchase_counters


@dataclass(frozen=True, slots=True)
class PerUserLimitInfo:
    period: str
    quantity: int | None


@dataclass(frozen=True, slots=True)
class Item:
    """An item row as read (`schemas.ItemOut` reads it, `per_user_limit` and `available`
    included)."""

    id: str
    name: str
    description: str
    image_url: str | None
    category: str
    tags: list[str]
    type: str
    points_price: int
    stock: int
    stock_total: int
    limit_period: str | None
    limit_quantity: int | None
    vip_days: int | None
    coupon_value_cents: int | None
    active: bool
    starts_at: datetime | None
    ends_at: datetime | None
    created_at: datetime
    updated_at: datetime
    min_tier: str | None

    @classmethod
    def of(cls, row: Row[Any]) -> Item:
        return cls(**row._mapping)

    @property
    def per_user_limit(self) -> PerUserLimitInfo | None:
        if not self.limit_period:
            return None
        return PerUserLimitInfo(self.limit_period, self.limit_quantity)

    @property
    def available(self) -> bool:
        """On sale right now (active and within its window)."""
        now = datetime.now(UTC)
        return unavailable_reason(self.active, self.starts_at, self.ends_at, now) is None


# Batch statement (fixed text, see shared/bulk.py). Rows come back typed as the table's.
_ITEM_COLUMNS = ", ".join(f"items.{c.name}" for c in items.c)
_ITEMS_BY_IDS = text(
    f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = ANY(CAST(:ids AS text[]))"
).columns(*items.c)


def available_now(now: datetime) -> Any:
    """On sale at `now`: active and within its window."""
    return and_(
        items.c.active.is_(True),
        or_(items.c.starts_at.is_(None), items.c.starts_at <= now),
        or_(items.c.ends_at.is_(None), items.c.ends_at > now),
    )


# -- catalog ---------------------------------------------------------------------------


async def insert_item(session: AsyncSession, row: dict[str, Any]) -> Item:
    result = await session.execute(insert(items).values(**row).returning(*items.c))
    return Item.of(result.one())


async def get_items(session: AsyncSession, item_ids: Sequence[str]) -> dict[str, Item]:
    if not item_ids:
        return {}
    rows = await session.execute(_ITEMS_BY_IDS, {"ids": sorted(set(item_ids))})
    return {r.id: Item.of(r) for r in rows}


async def get_item(session: AsyncSession, item_id: str, *, lock: bool = False) -> Item | None:
    stmt = select(items).where(items.c.id == item_id)
    if lock:
        # FOR NO KEY UPDATE, like the stock updates: a plain FOR UPDATE would also wait for
        # the key-share locks that inserting a redemption takes on its item (the foreign
        # key), and deadlock with a redeemer that holds one and waits for this row.
        stmt = stmt.with_for_update(key_share=True)
    row = (await session.execute(stmt)).one_or_none()
    return None if row is None else Item.of(row)


async def update_item(session: AsyncSession, item_id: str, values: dict[str, Any]) -> Item:
    result = await session.execute(
        update(items)
        .where(items.c.id == item_id)
        .values(**values, updated_at=func.now())
        .returning(*items.c)
    )
    return Item.of(result.one())


async def list_items(
    session: AsyncSession, query: CatalogQuery, now: datetime
) -> tuple[list[Item], int]:
    conditions: list[Any] = []
    if not query.include_unavailable:
        conditions.append(available_now(now))
    if query.category is not None:
        conditions.append(items.c.category == query.category)
    if query.item_type is not None:
        conditions.append(items.c.type == query.item_type)
    if query.tag is not None:
        conditions.append(items.c.tags.any(query.tag))
    if query.affordable_for is not None:
        conditions.append(items.c.points_price <= query.affordable_for)
    if query.in_stock:
        conditions.append(items.c.stock > 0)
    where = and_(true(), *conditions)
    total = (
        await session.execute(select(func.count()).select_from(items).where(where))
    ).scalar_one()
    rows = await session.execute(
        select(items)
        .where(where)
        .order_by(items.c.points_price, items.c.name, items.c.id)
        .limit(query.limit)
        .offset(query.offset)
    )
    return [Item.of(r) for r in rows], int(total)


async def reserve_stock(session: AsyncSession, item_id: str, quantity: int) -> bool:
    """Take units off the shelf if there are enough; the row lock serializes takers."""
    result = await session.execute(
        update(items)
        .where(items.c.id == item_id, items.c.stock >= quantity)
        .values(stock=items.c.stock - quantity)
        .returning(items.c.stock)
    )
    return result.one_or_none() is not None


async def release_stock(session: AsyncSession, item_id: str, quantity: int) -> None:
    await session.execute(
        update(items).where(items.c.id == item_id).values(stock=items.c.stock + quantity)
    )


# -- per-user limits --------------------------------------------------------------------


async def count_against_limit(
    session: AsyncSession, user_id: str, item_id: str, period_key: str, quantity: int, limit: int
) -> bool:
    """Add `quantity` to the user's counter unless that would pass `limit`."""
    if quantity > limit:
        return False
    new = pg_insert(purchase_counters).values(
        user_id=user_id, item_id=item_id, period_key=period_key, quantity=quantity
    )
    stmt = new.on_conflict_do_update(
        index_elements=[
            purchase_counters.c.user_id,
            purchase_counters.c.item_id,
            purchase_counters.c.period_key,
        ],
        set_={"quantity": purchase_counters.c.quantity + new.excluded.quantity},
        where=purchase_counters.c.quantity + new.excluded.quantity <= limit,
    ).returning(purchase_counters.c.quantity)
    return (await session.execute(stmt)).one_or_none() is not None


async def release_limit(
    session: AsyncSession, user_id: str, item_id: str, period_key: str, quantity: int
) -> None:
    await session.execute(
        update(purchase_counters)
        .where(
            purchase_counters.c.user_id == user_id,
            purchase_counters.c.item_id == item_id,
            purchase_counters.c.period_key == period_key,
        )
        .values(quantity=purchase_counters.c.quantity - quantity)
    )


async def used_quantities(
    session: AsyncSession, user_id: str, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """Counters for (item_id, period_key) pairs of one user."""
    if not keys:
        return {}
    rows = await session.execute(
        select(
            purchase_counters.c.item_id,
            purchase_counters.c.period_key,
            purchase_counters.c.quantity,
        ).where(
            purchase_counters.c.user_id == user_id,
            purchase_counters.c.item_id.in_([k[0] for k in keys]),
        )
    )
    return {(r.item_id, r.period_key): r.quantity for r in rows}
