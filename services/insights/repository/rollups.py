"""The rollups a consumed batch writes: daily counters, the sets they count (active users,
redeemers, task-periods, notifications, holders), experiments' exposures and outcomes, and the
recommender's redemptions and tiers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights.domain import CounterKey
from shared.bulk import Bulk, KeyedRows

COUNTERS = Bulk("kpi_daily", {"day": "date", "asset": "text", "metric": "text", "value": "bigint"})

_ADD_COUNTERS = COUNTERS.insert(
    "ON CONFLICT (day, asset, metric) DO UPDATE SET value = kpi_daily.value + excluded.value"
)


async def add_counters(session: AsyncSession, counts: Mapping[CounterKey, int]) -> None:
    """Add to the daily counters, rows locked in key order (replicas never deadlock)."""
    rows = [
        {"day": d, "asset": a, "metric": m, "value": v}
        for (d, a, m), v in sorted(counts.items())
        if v
    ]
    if rows:
        await session.execute(_ADD_COUNTERS, COUNTERS.params(rows))


DAY_USERS = {"day": "date", "user_id": "text"}
_ACTIVE = Bulk("active_days", DAY_USERS)
_REDEEMERS = Bulk("redeemer_days", DAY_USERS)
_NEW_ACTIVE = _ACTIVE.insert("ON CONFLICT DO NOTHING RETURNING day")
_NEW_REDEEMERS = _REDEEMERS.insert("ON CONFLICT DO NOTHING RETURNING day")


async def _new_day_users(
    session: AsyncSession, bulk: Bulk, statement: Any, pairs: Iterable[tuple[date, str]]
) -> Counter[date]:
    rows = [{"day": d, "user_id": u} for d, u in sorted(set(pairs))]
    if not rows:
        return Counter()
    return Counter(r.day for r in await session.execute(statement, bulk.params(rows)))


async def add_active_users(
    session: AsyncSession, pairs: Iterable[tuple[date, str]]
) -> Counter[date]:
    """Record (day, user) activity; returns how many users were new on each day."""
    return await _new_day_users(session, _ACTIVE, _NEW_ACTIVE, pairs)


async def add_redeemers(session: AsyncSession, pairs: Iterable[tuple[date, str]]) -> Counter[date]:
    return await _new_day_users(session, _REDEEMERS, _NEW_REDEEMERS, pairs)


TASK_PERIODS = KeyedRows(
    Bulk("task_periods", {"task_id": "text", "period_key": "text", "user_id": "text"}),
    "t.day, t.completed",
)

_TASK_PERIOD_STATE = Bulk(
    "task_periods",
    {
        "task_id": "text",
        "period_key": "text",
        "user_id": "text",
        "day": "date",
        "completed": "boolean",
    },
)

_SET_TASK_PERIODS = _TASK_PERIOD_STATE.update(
    ["task_id", "period_key", "user_id"], "day = v.day, completed = v.completed"
)

NOTIFICATIONS = KeyedRows(
    Bulk("notifications", {"notification_id": "text"}), "t.day, t.sent, t.opened"
)

_NOTIFICATION_STATE = Bulk(
    "notifications",
    {"notification_id": "text", "day": "date", "sent": "boolean", "opened": "boolean"},
)

_SET_NOTIFICATIONS = _NOTIFICATION_STATE.update(
    ["notification_id"], "day = v.day, sent = v.sent, opened = v.opened"
)


async def lock_task_periods(
    session: AsyncSession, keys: Iterable[tuple[str, str, str]]
) -> dict[tuple[Any, ...], Row[Any]]:
    return await TASK_PERIODS.lock(session, keys)


async def save_task_periods(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_SET_TASK_PERIODS, _TASK_PERIOD_STATE.params(rows))


async def lock_notifications(
    session: AsyncSession, ids: Iterable[str]
) -> dict[tuple[Any, ...], Row[Any]]:
    return await NOTIFICATIONS.lock(session, ((i,) for i in ids))


async def save_notifications(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_SET_NOTIFICATIONS, _NOTIFICATION_STATE.params(rows))


BALANCES = KeyedRows(
    Bulk("balances", {"user_id": "text", "asset": "text"}), "t.balance, t.entry_id, t.holder"
)

_BALANCE_STATE = Bulk(
    "balances",
    {
        "user_id": "text",
        "asset": "text",
        "balance": "bigint",
        "entry_id": "bigint",
        "holder": "boolean",
    },
)

_SET_BALANCES = _BALANCE_STATE.update(
    ["user_id", "asset"], "balance = v.balance, entry_id = v.entry_id, holder = v.holder"
)


async def lock_balances(
    session: AsyncSession, keys: Iterable[tuple[str, str]]
) -> dict[tuple[Any, ...], Row[Any]]:
    return await BALANCES.lock(session, keys)


async def save_balances(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_SET_BALANCES, _BALANCE_STATE.params(rows))


_ACTIVE_RULES = text(
    "SELECT task_id, action, period, starts_at, ends_at FROM task_rules WHERE active"
)


async def active_rules(session: AsyncSession) -> list[Row[Any]]:
    return list(await session.execute(_ACTIVE_RULES))


_EXPOSURES = Bulk(
    "exposures",
    {
        "experiment_key": "text",
        "user_id": "text",
        "variant": "text",
        "exposed_at": "timestamptz",
        "source": "text",
    },
)

_INSERT_EXPOSURES = _EXPOSURES.insert("ON CONFLICT DO NOTHING")

_OUTCOMES = Bulk(
    "outcomes",
    {
        "event_id": "text",
        "user_id": "text",
        "kind": "text",
        "experiment": "text",
        "amount": "bigint",
        "occurred_at": "timestamptz",
    },
)

_INSERT_OUTCOMES = _OUTCOMES.insert("ON CONFLICT DO NOTHING")


async def add_exposures(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        rows = sorted(rows, key=lambda r: (r["experiment_key"], r["user_id"]))
        await session.execute(_INSERT_EXPOSURES, _EXPOSURES.params(rows))


async def add_outcomes(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_INSERT_OUTCOMES, _OUTCOMES.params(rows))


_REDEMPTIONS = Bulk(
    "redemptions",
    {
        "redemption_id": "text",
        "user_id": "text",
        "item_id": "text",
        "quantity": "integer",
        "points": "bigint",
        "completed_at": "timestamptz",
    },
)

_INSERT_REDEMPTIONS = _REDEMPTIONS.insert("ON CONFLICT DO NOTHING RETURNING redemption_id")

_CANCEL_REDEMPTIONS = text(
    "UPDATE redemptions SET cancelled = true "
    "WHERE redemption_id = ANY(CAST(:ids AS text[])) AND NOT cancelled"
)


async def add_redemptions(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    """Record completed redemptions; returns the ids that were new."""
    if not rows:
        return set()
    result = await session.execute(_INSERT_REDEMPTIONS, _REDEMPTIONS.params(rows))
    return {r.redemption_id for r in result}


async def cancel_redemptions(session: AsyncSession, ids: Sequence[str]) -> None:
    if ids:
        await session.execute(_CANCEL_REDEMPTIONS, {"ids": sorted(set(ids))})


_TIERS = Bulk(
    "user_tiers", {"user_id": "text", "tier": "text", "sequence": "bigint", "ladder": "jsonb"}
)

_SAVE_TIERS = _TIERS.insert(
    "ON CONFLICT (user_id) DO UPDATE SET tier = excluded.tier, sequence = excluded.sequence, "
    "ladder = excluded.ladder WHERE user_tiers.sequence < excluded.sequence"
)


async def save_tiers(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        rows = sorted(rows, key=lambda r: r["user_id"])
        await session.execute(_SAVE_TIERS, _TIERS.params(rows))
