"""SQL of paid orders, their refunds and the grants each order's behavior caused."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress.models import grants, order_refunds, orders
from shared.bulk import Bulk


@dataclass(frozen=True, slots=True)
class Order:
    """A paid order (an order_paid behavior with an amount), as stored."""

    order_behavior_id: str
    user_id: str
    source: str
    order_no: str
    paid_cents: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Refund:
    """A refund of an order, as stored."""

    order_behavior_id: str
    refund_no: str
    user_id: str
    amount_cents: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Grant:
    """A grant task_progress made, as stored."""

    grant_id: str
    user_id: str
    task_id: str
    period_key: str
    completion: int
    points: int
    expires_at: datetime | None
    causation_event_id: str
    created_at: datetime
    asset: str
    available_at: datetime | None
    rule_version: int


ORDERS = Bulk(
    "orders",
    {
        "order_behavior_id": "text",
        "user_id": "text",
        "source": "text",
        "order_no": "text",
        "paid_cents": "bigint",
    },
)
REFUNDS = Bulk(
    "order_refunds",
    {"order_behavior_id": "text", "refund_no": "text", "user_id": "text", "amount_cents": "bigint"},
)
# One statement: record the orders and answer those new ones a refund already waits for.
_INSERT_ORDERS = text(
    f"WITH added AS ({ORDERS.insert('ON CONFLICT DO NOTHING RETURNING order_behavior_id').text}) "
    "SELECT a.order_behavior_id FROM added a WHERE EXISTS "
    "(SELECT 1 FROM order_refunds r WHERE r.order_behavior_id = a.order_behavior_id)"
)
_INSERT_REFUNDS = REFUNDS.insert("ON CONFLICT DO NOTHING RETURNING order_behavior_id, refund_no")


async def insert_orders(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    """Record paid orders (a known one is left as is); returns the new ones with refunds."""
    if not rows:
        return set()
    result = await session.execute(_INSERT_ORDERS, ORDERS.params(rows))
    return set(result.scalars())


async def insert_refunds(session: AsyncSession, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Record refunds (a known refund number is left as is); returns the new (order, refund_no)."""
    if not rows:
        return set()
    result = await session.execute(_INSERT_REFUNDS, REFUNDS.params(rows))
    return {(r.order_behavior_id, r.refund_no) for r in result}


async def orders_by_id(
    session: AsyncSession, order_ids: Sequence[str], *, for_update: bool = False
) -> dict[str, Order]:
    """The known orders among `order_ids`; locked in id order with for_update."""
    if not order_ids:
        return {}
    query = (
        select(orders)
        .where(orders.c.order_behavior_id.in_(sorted(set(order_ids))))
        .order_by(orders.c.order_behavior_id)
    )
    if for_update:
        query = query.with_for_update()
    return {r.order_behavior_id: Order(**r._mapping) for r in await session.execute(query)}


async def refunds_of(session: AsyncSession, order_ids: Sequence[str]) -> dict[str, list[Refund]]:
    """Each order's refunds, oldest first."""
    found: dict[str, list[Refund]] = {oid: [] for oid in order_ids}
    if order_ids:
        rows = await session.execute(
            select(order_refunds)
            .where(order_refunds.c.order_behavior_id.in_(list(order_ids)))
            .order_by(order_refunds.c.created_at, order_refunds.c.refund_no)
        )
        for r in rows:
            found[r.order_behavior_id].append(Refund(**r._mapping))
    return found


async def grants_caused_by(
    session: AsyncSession, order_ids: Sequence[str]
) -> dict[str, list[Grant]]:
    """The grants each order's behavior caused, in the order they were made."""
    found: dict[str, list[Grant]] = {oid: [] for oid in order_ids}
    if order_ids:
        rows = await session.execute(
            select(grants)
            .where(grants.c.causation_event_id.in_(list(order_ids)))
            .order_by(grants.c.created_at, grants.c.grant_id)
        )
        for r in rows:
            found[r.causation_event_id].append(Grant(**r._mapping))
    return found
