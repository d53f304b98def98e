"""Every SQL statement of task_progress."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress.models import grants, order_refunds, orders, progress, tasks
from shared.bulk import Bulk, KeyedRows

ProgressKey = tuple[str, str, str]  # (user_id, task_id, period_key)


async def active_tasks(session: AsyncSession) -> list[Any]:
    return list(await session.execute(select(tasks).where(tasks.c.active)))


async def list_tasks(
    session: AsyncSession, active: bool | None, limit: int, offset: int
) -> tuple[list[Any], int]:
    query = select(tasks)
    count = select(func.count()).select_from(tasks)
    if active is not None:
        query, count = query.where(tasks.c.active == active), count.where(tasks.c.active == active)
    rows = await session.execute(
        query.order_by(tasks.c.created_at, tasks.c.id).limit(limit).offset(offset)
    )
    return list(rows), int((await session.execute(count)).scalar_one())


async def get_task(session: AsyncSession, task_id: str, *, for_update: bool = False) -> Any:
    query = select(tasks).where(tasks.c.id == task_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).one_or_none()


async def insert_task(
    session: AsyncSession, values: dict[str, Any], *, if_absent: bool = False
) -> None:
    stmt = pg_insert(tasks).values(**values)
    if if_absent:
        stmt = stmt.on_conflict_do_nothing()
    await session.execute(stmt)


async def update_task(session: AsyncSession, task_id: str, values: dict[str, Any]) -> None:
    await session.execute(
        update(tasks).where(tasks.c.id == task_id).values(**values, updated_at=func.now())
    )


PROGRESS_KEYS = Bulk("progress", {"user_id": "text", "task_id": "text", "period_key": "text"})
PROGRESS = Bulk(
    "progress",
    {
        "user_id": "text",
        "task_id": "text",
        "period_key": "text",
        "count": "integer",
        "completions": "integer",
        "points": "bigint",
        "status": "text",
        "last_event_at": "timestamptz",
    },
)
GRANTS = Bulk(
    "grants",
    {
        "grant_id": "text",
        "user_id": "text",
        "task_id": "text",
        "period_key": "text",
        "completion": "integer",
        "points": "integer",
        "expires_at": "timestamptz",
        "causation_event_id": "text",
        "asset": "text",
        "available_at": "timestamptz",
    },
)
LOCKED_PROGRESS = KeyedRows(PROGRESS_KEYS, "t.count AS n, t.completions, t.points, t.last_event_at")
_SAVE_PROGRESS = PROGRESS.update(
    ["user_id", "task_id", "period_key"],
    "count = v.count, completions = v.completions, points = v.points, status = v.status, "
    "last_event_at = v.last_event_at, updated_at = now()",
)
_INSERT_GRANTS = GRANTS.insert()


async def lock_progress(
    session: AsyncSession, keys: Sequence[ProgressKey]
) -> dict[ProgressKey, Any]:
    """Create missing progress rows and lock all of them (in key order, to avoid deadlocks).

    Each row has n (the count), completions, points and last_event_at."""
    rows = await LOCKED_PROGRESS.lock(session, keys)
    return {(u, t, p): row for (u, t, p), row in rows.items()}


async def save_progress(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """rows: every PROGRESS column per progress row."""
    if rows:
        await session.execute(_SAVE_PROGRESS, PROGRESS.params(rows))


async def insert_grants(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_INSERT_GRANTS, GRANTS.params(rows))


async def progress_for_user(
    session: AsyncSession, user_id: str, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Any]:
    if not keys:
        return {}
    rows = await session.execute(
        select(progress).where(
            progress.c.user_id == user_id,
            tuple_(progress.c.task_id, progress.c.period_key).in_(list(keys)),
        )
    )
    return {(r.task_id, r.period_key): r for r in rows}


async def grants_for_user(session: AsyncSession, user_id: str, limit: int) -> list[Any]:
    rows = await session.execute(
        select(grants)
        .where(grants.c.user_id == user_id)
        .order_by(grants.c.created_at.desc())
        .limit(limit)
    )
    return list(rows)


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
) -> dict[str, Any]:
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
    return {r.order_behavior_id: r for r in await session.execute(query)}


async def refunds_of(session: AsyncSession, order_ids: Sequence[str]) -> dict[str, list[Any]]:
    """Each order's refunds, oldest first."""
    found: dict[str, list[Any]] = {oid: [] for oid in order_ids}
    if order_ids:
        rows = await session.execute(
            select(order_refunds)
            .where(order_refunds.c.order_behavior_id.in_(list(order_ids)))
            .order_by(order_refunds.c.created_at, order_refunds.c.refund_no)
        )
        for r in rows:
            found[r.order_behavior_id].append(r)
    return found


async def grants_caused_by(session: AsyncSession, order_ids: Sequence[str]) -> dict[str, list[Any]]:
    """The grants each order's behavior caused, in the order they were made."""
    found: dict[str, list[Any]] = {oid: [] for oid in order_ids}
    if order_ids:
        rows = await session.execute(
            select(grants)
            .where(grants.c.causation_event_id.in_(list(order_ids)))
            .order_by(grants.c.created_at, grants.c.grant_id)
        )
        for r in rows:
            found[r.causation_event_id].append(r)
    return found
