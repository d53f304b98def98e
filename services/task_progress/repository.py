"""Every SQL statement of task_progress."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from operator import itemgetter
from typing import Any, NamedTuple

import asyncpg
from sqlalchemy import delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress.models import (
    checkins,
    grants,
    makeups,
    order_refunds,
    orders,
    progress,
    task_versions,
    tasks,
)
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
        "rule_version": "integer",
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


# --- rule versions -----------------------------------------------------------------------------


async def insert_version(
    session: AsyncSession, task_id: str, version: int, rule: dict[str, Any]
) -> None:
    await session.execute(
        pg_insert(task_versions)
        .values(task_id=task_id, version=version, rule=rule)
        .on_conflict_do_nothing()
    )


async def versions_of(session: AsyncSession, task_id: str) -> list[Any]:
    rows = await session.execute(
        select(task_versions)
        .where(task_versions.c.task_id == task_id)
        .order_by(task_versions.c.version)
    )
    return list(rows)


# --- behavior history --------------------------------------------------------------------------

HISTORY = Bulk(
    "behavior_history",
    {
        "behavior_id": "text",
        "user_id": "text",
        "action": "text",
        "occurred_at": "timestamptz",
        "attributes": "jsonb",
    },
)
_INSERT_HISTORY = HISTORY.insert("ON CONFLICT DO NOTHING RETURNING behavior_id")


async def insert_history(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    """Keep behaviors for the dry run; returns the ids not kept before.

    The behavior id is the key, so this is also task_progress's inbox: an id already kept (a
    re-read, a duplicate) is not returned, and a concurrent transaction inserting the same id
    blocks here until it commits or rolls back, as an inbox claim would."""
    if not rows:
        return set()
    result = await session.execute(_INSERT_HISTORY, HISTORY.params(rows))
    return set(result.scalars())


class StoredBehavior(NamedTuple):
    behavior_id: str
    user_id: str
    action: str
    occurred_at: datetime
    attributes: Any  # a dict, or None when the caller's rule never reads attributes


class StoredRow(asyncpg.Record):
    """A stored behavior as asyncpg decodes it (no attributes), readable by name like the
    live consumer's events: no Python object is made per row."""

    __slots__ = ()
    behavior_id = property(itemgetter(0))
    user_id = property(itemgetter(1))
    action = property(itemgetter(2))
    occurred_at = property(itemgetter(3))
    attributes = property(itemgetter(4))


async def stream_history(
    session: AsyncSession,
    action: str,
    start: datetime,
    end: datetime,
    *,
    with_attributes: bool = True,
    chunk: int = 20_000,
) -> AsyncIterator[Sequence[Any]]:
    """The stored behaviors of `action` in [start, end), in time order (as the index has
    them), `chunk` at a time through a server-side cursor of the session's own connection
    (its transaction and snapshot): memory stays flat however many there are. Read with
    asyncpg directly: SQLAlchemy's rows cost twice the time of the whole decision. Without
    attributes (for a rule that never reads them) each row's attributes are None."""
    attributes = "attributes::text" if with_attributes else "NULL"
    sql = (
        f"SELECT behavior_id, user_id, action, occurred_at, {attributes} FROM behavior_history "
        "WHERE action = $1 AND occurred_at >= $2 AND occurred_at < $3 ORDER BY occurred_at"
    )
    raw = (await (await session.connection()).get_raw_connection()).driver_connection
    assert raw is not None
    cursor = await raw.cursor(sql, action, start, end, record_class=StoredRow)
    while True:
        rows = await cursor.fetch(chunk)
        if not rows:
            return
        if with_attributes:
            yield [StoredBehavior(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]
        else:
            yield rows


# --- check-ins ---------------------------------------------------------------------------------

CHECKIN_FROM = Bulk("checkins", {"user_id": "text", "task_id": "text", "day": "date"})
# Per (user, task, day): the stored days from the day before on, and the last day before it.
_CHECKINS_FROM = text(
    "SELECT c.user_id, c.task_id, c.day, c.kind, c.streak, c.paid "
    f"FROM {CHECKIN_FROM.source()} "
    "JOIN checkins c ON c.user_id = v.user_id AND c.task_id = v.task_id "
    "AND c.day >= v.day - 1"
)
_LAST_BEFORE = text(
    "SELECT v.user_id, v.task_id, v.day AS asked, last.day, last.streak "
    f"FROM {CHECKIN_FROM.source()} "
    "JOIN LATERAL (SELECT day, streak FROM checkins c WHERE c.user_id = v.user_id "
    "AND c.task_id = v.task_id AND c.day < v.day ORDER BY day DESC LIMIT 1) last ON true"
)
CHECKIN_ROWS = Bulk(
    "checkins",
    {
        "user_id": "text",
        "task_id": "text",
        "day": "date",
        "kind": "text",
        "streak": "integer",
        "paid": "bigint",
    },
)
_SAVE_CHECKINS = CHECKIN_ROWS.insert(
    "ON CONFLICT (user_id, task_id, day) DO UPDATE "
    "SET streak = excluded.streak, paid = excluded.paid"
)


async def checkin_days(
    session: AsyncSession, asked: Sequence[tuple[str, str, date]]
) -> tuple[list[Any], list[Any]]:
    """For (user, task, day) asked: every stored day from the day before on, and the latest
    stored day before it (the caller holds the (user, task) lock)."""
    if not asked:
        return [], []
    params = CHECKIN_FROM.params({"user_id": u, "task_id": t, "day": d} for u, t, d in asked)
    days = list(await session.execute(_CHECKINS_FROM, params))
    last = list(await session.execute(_LAST_BEFORE, params))
    return days, last


async def save_checkins(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_SAVE_CHECKINS, CHECKIN_ROWS.params(rows))


async def checkins_between(
    session: AsyncSession, user_id: str, task_id: str, first: date, last: date
) -> list[Any]:
    rows = await session.execute(
        select(checkins.c.day, checkins.c.kind, checkins.c.streak, checkins.c.paid)
        .where(
            checkins.c.user_id == user_id,
            checkins.c.task_id == task_id,
            checkins.c.day >= first,
            checkins.c.day <= last,
        )
        .order_by(checkins.c.day)
    )
    return list(rows)


async def longest_streak(session: AsyncSession, user_id: str, task_id: str) -> int:
    result = await session.execute(
        select(func.coalesce(func.max(checkins.c.streak), 0)).where(
            checkins.c.user_id == user_id, checkins.c.task_id == task_id
        )
    )
    return int(result.scalar_one())


async def first_checkin_task(session: AsyncSession) -> Any:
    result = await session.execute(
        select(tasks)
        .where(tasks.c.kind == "checkin", tasks.c.active)
        .order_by(tasks.c.created_at, tasks.c.id)
        .limit(1)
    )
    return result.one_or_none()


# --- make-ups ----------------------------------------------------------------------------------


async def makeup_of(session: AsyncSession, user_id: str, task_id: str, day: date) -> Any:
    result = await session.execute(
        select(makeups).where(
            makeups.c.user_id == user_id, makeups.c.task_id == task_id, makeups.c.day == day
        )
    )
    return result.one_or_none()


async def makeups_in_month(
    session: AsyncSession, user_id: str, task_id: str, first: date, last: date
) -> int:
    result = await session.execute(
        select(func.count()).where(
            makeups.c.user_id == user_id,
            makeups.c.task_id == task_id,
            makeups.c.day >= first,
            makeups.c.day <= last,
        )
    )
    return int(result.scalar_one())


async def insert_makeup(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(pg_insert(makeups).values(**values).on_conflict_do_nothing())


async def finish_makeup(
    session: AsyncSession, user_id: str, task_id: str, day: date, result: dict[str, Any]
) -> None:
    await session.execute(
        update(makeups)
        .where(makeups.c.user_id == user_id, makeups.c.task_id == task_id, makeups.c.day == day)
        .values(status="done", result=result)
    )


async def drop_makeup(session: AsyncSession, user_id: str, task_id: str, day: date) -> None:
    await session.execute(
        delete(makeups).where(
            makeups.c.user_id == user_id,
            makeups.c.task_id == task_id,
            makeups.c.day == day,
            makeups.c.status == "pending",
        )
    )


# --- member tiers ------------------------------------------------------------------------------

TIER_CHANGES = Bulk(
    "tier_history",
    {
        "user_id": "text",
        "sequence": "integer",
        "tier": "text",
        "multiplier": "numeric",
        "effective_at": "timestamptz",
    },
)
_INSERT_TIER_CHANGES = TIER_CHANGES.insert("ON CONFLICT DO NOTHING")
_TIERS_OF = text(
    "SELECT user_id, sequence, multiplier, effective_at FROM tier_history "
    "WHERE user_id = ANY(CAST(:users AS text[]))"
)


async def insert_tier_changes(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Record tier changes; one seen before (same user and sequence) changes nothing."""
    if rows:
        await session.execute(_INSERT_TIER_CHANGES, TIER_CHANGES.params(rows))


async def tier_changes_of(session: AsyncSession, user_ids: Sequence[str]) -> list[Any]:
    if not user_ids:
        return []
    return list(await session.execute(_TIERS_OF, {"users": list(user_ids)}))
