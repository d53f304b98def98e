"""Every SQL statement of insights. Batches are written set-based (shared/bulk.py): one
statement per table per consumed batch, whatever its size."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Row, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights.domain import CounterKey
from services.insights.models import experiments
from shared.bulk import Bulk, KeyedRows

# -- counters and sets ------------------------------------------------------------------------

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


# -- experiments' inputs ------------------------------------------------------------------------

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


# -- recommender inputs -------------------------------------------------------------------------

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


# -- reference data copied from other services ---------------------------------------------------

_CATALOG = Bulk(
    "catalog_items",
    {
        "item_id": "text",
        "name": "text",
        "category": "text",
        "tags": "jsonb",
        "points_price": "bigint",
        "stock": "bigint",
        "per_user_limit": "jsonb",
        "min_tier": "text",
        "available": "boolean",
    },
)


def _set_excluded(bulk: Bulk, keys: Sequence[str]) -> str:
    return ", ".join(f"{c} = excluded.{c}" for c in bulk.columns if c not in keys)


_CATALOG_FIELDS = [c for c in _CATALOG.columns if c != "item_id"]
# Rows that did not change are left alone: synced_at then says when the copy last changed.
_UPSERT_CATALOG = _CATALOG.insert(
    f"ON CONFLICT (item_id) DO UPDATE SET {_set_excluded(_CATALOG, ['item_id'])}, "
    "synced_at = now() WHERE "
    f"({', '.join(f'catalog_items.{c}' for c in _CATALOG_FIELDS)}) IS DISTINCT FROM "
    f"({', '.join(f'excluded.{c}' for c in _CATALOG_FIELDS)})"
)
_RULES = Bulk(
    "task_rules",
    {
        "task_id": "text",
        "action": "text",
        "period": "text",
        "active": "boolean",
        "starts_at": "timestamptz",
        "ends_at": "timestamptz",
    },
)
_UPSERT_RULES = _RULES.insert(
    f"ON CONFLICT (task_id) DO UPDATE SET {_set_excluded(_RULES, ['task_id'])}"
)
_EXPIRING = Bulk(
    "expiring_points", {"user_id": "text", "expires_at": "timestamptz", "points": "bigint"}
)


async def replace_catalog(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Make the copy of the catalog exactly `rows` (items gone from the exchange go here too)."""
    await session.execute(
        text("DELETE FROM catalog_items WHERE NOT (item_id = ANY(CAST(:ids AS text[])))"),
        {"ids": [r["item_id"] for r in rows]},
    )
    if rows:
        await session.execute(_UPSERT_CATALOG, _CATALOG.params(rows))


async def replace_rules(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(
        text("DELETE FROM task_rules WHERE NOT (task_id = ANY(CAST(:ids AS text[])))"),
        {"ids": [r["task_id"] for r in rows]},
    )
    if rows:
        await session.execute(_UPSERT_RULES, _RULES.params(rows))


async def replace_expiring(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(text("DELETE FROM expiring_points"))
    if rows:
        await session.execute(_EXPIRING.insert(), _EXPIRING.params(rows))


_MODEL_INPUTS = text(
    "SELECT (SELECT count(*) FROM catalog_items) AS items, "
    "(SELECT max(synced_at) FROM catalog_items) AS catalog_changed, "
    "r.redemptions, r.cancelled FROM (SELECT count(*) AS redemptions, "
    "count(*) FILTER (WHERE cancelled) AS cancelled FROM redemptions) r"
)


async def model_inputs(session: AsyncSession) -> tuple[Any, ...]:
    """A fingerprint of what the recommender is built from (unchanged: no rebuild)."""
    return tuple((await session.execute(_MODEL_INPUTS)).one())


async def catalog(session: AsyncSession) -> list[Row[Any]]:
    return list(await session.execute(text("SELECT * FROM catalog_items ORDER BY item_id")))


# Co-redemptions counted by PostgreSQL: users per item, and per pair of items both redeemed.
_ITEM_USERS = text(
    "SELECT item_id, count(DISTINCT user_id) AS users FROM redemptions WHERE NOT cancelled "
    "GROUP BY item_id"
)
_PAIR_USERS = text(
    """
    WITH owned AS (SELECT DISTINCT user_id, item_id FROM redemptions WHERE NOT cancelled)
    SELECT a.item_id AS i, b.item_id AS j, count(*) AS users
    FROM owned a JOIN owned b ON a.user_id = b.user_id AND a.item_id < b.item_id
    GROUP BY a.item_id, b.item_id
    """
)
_POPULARITY = text(
    "SELECT item_id, sum(quantity) AS units FROM redemptions "
    "WHERE NOT cancelled AND completed_at >= :since GROUP BY item_id"
)


async def co_redemptions(
    session: AsyncSession,
) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    users_of = {r.item_id: int(r.users) for r in await session.execute(_ITEM_USERS)}
    together = {(r.i, r.j): int(r.users) for r in await session.execute(_PAIR_USERS)}
    return users_of, together


async def popularity(session: AsyncSession, since: datetime) -> dict[str, int]:
    return {r.item_id: int(r.units) for r in await session.execute(_POPULARITY, {"since": since})}


# One round trip for everything the recommender needs to know about one user.
_USER_VIEW = text(
    """
    SELECT
      (SELECT balance FROM balances WHERE user_id = :user_id AND asset = 'points') AS balance,
      (SELECT json_build_object('tier', tier, 'ladder', ladder) FROM user_tiers
        WHERE user_id = :user_id) AS tier,
      (SELECT coalesce(json_agg(json_build_array(item_id, quantity, completed_at)
                                ORDER BY completed_at DESC), '[]')
         FROM (SELECT item_id, quantity, completed_at FROM redemptions
               WHERE user_id = :user_id AND NOT cancelled
               ORDER BY completed_at DESC LIMIT 500) r) AS redeemed,
      (SELECT coalesce(json_agg(json_build_array(expires_at, points) ORDER BY expires_at), '[]')
         FROM expiring_points
         WHERE user_id = :user_id AND expires_at > :now AND expires_at <= :horizon) AS expiring
    """
)


async def user_view(
    session: AsyncSession, user_id: str, now: datetime, horizon: datetime
) -> Row[Any]:
    result = await session.execute(_USER_VIEW, {"user_id": user_id, "now": now, "horizon": horizon})
    return result.one()


# -- KPI reads ----------------------------------------------------------------------------------

_COUNTERS_BETWEEN = text(
    "SELECT day, asset, metric, value FROM kpi_daily WHERE day BETWEEN :start AND :end"
)
_HOLDERS_BEFORE = text(
    "SELECT asset, sum(CASE metric WHEN 'holder_opens' THEN value ELSE -value END) AS holders "
    "FROM kpi_daily WHERE day < :start AND metric IN ('holder_opens', 'holder_closes') "
    "GROUP BY asset"
)
_DISTINCT_REDEEMERS = text(
    "SELECT count(DISTINCT user_id) FROM redeemer_days WHERE day BETWEEN :start AND :end"
)


async def counters_between(session: AsyncSession, start: date, end: date) -> list[Row[Any]]:
    return list(await session.execute(_COUNTERS_BETWEEN, {"start": start, "end": end}))


async def holders_before(session: AsyncSession, start: date) -> dict[str, int]:
    return {
        r.asset: int(r.holders) for r in await session.execute(_HOLDERS_BEFORE, {"start": start})
    }


async def distinct_redeemers(session: AsyncSession, start: date, end: date) -> int:
    result = await session.execute(_DISTINCT_REDEEMERS, {"start": start, "end": end})
    return int(result.scalar_one())


# -- experiments --------------------------------------------------------------------------------


async def insert_experiment(session: AsyncSession, values: dict[str, Any]) -> bool:
    result = await session.execute(
        text(
            "INSERT INTO experiments (key, name, description, variants, metric, namespace, "
            "coverage, seed, hash_version, status) VALUES (:key, :name, :description, "
            "CAST(:variants AS jsonb), CAST(:metric AS jsonb), CAST(:namespace AS jsonb), "
            ":coverage, :seed, :hash_version, :status) ON CONFLICT (key) DO NOTHING RETURNING key"
        ),
        {
            **values,
            "variants": json.dumps(values["variants"]),
            "metric": json.dumps(values["metric"]),
            "namespace": None if values["namespace"] is None else json.dumps(values["namespace"]),
        },
    )
    return result.first() is not None


async def experiment(session: AsyncSession, key: str) -> Row[Any] | None:
    result = await session.execute(select(experiments).where(experiments.c.key == key))
    return result.one_or_none()


async def list_experiments(
    session: AsyncSession, status: str | None, limit: int, offset: int
) -> tuple[list[Row[Any]], int]:
    query = select(experiments)
    count = text(
        "SELECT count(*) FROM experiments "
        "WHERE (CAST(:status AS text) IS NULL OR status = CAST(:status AS text))"
    )
    if status is not None:
        query = query.where(experiments.c.status == status)
    rows = await session.execute(query.order_by(experiments.c.key).limit(limit).offset(offset))
    total = (await session.execute(count, {"status": status})).scalar_one()
    return list(rows), int(total)


async def set_status(session: AsyncSession, key: str, status: str) -> Row[Any] | None:
    result = await session.execute(
        experiments.update()
        .where(experiments.c.key == key)
        .values(status=status, updated_at=text("now()"))
        .returning(*experiments.c)
    )
    return result.one_or_none()


# Per variant: users exposed, users with an outcome in their window, and the sum and sum of
# squares of each user's outcome total (for a mean metric's Welch test).
_RESULTS = text(
    """
    SELECT e.variant,
           count(*) AS n,
           count(*) FILTER (WHERE o.events > 0) AS converted,
           coalesce(sum(o.total), 0) AS total,
           coalesce(sum(o.total * o.total), 0) AS total_squares
    FROM exposures e
    CROSS JOIN LATERAL (
        SELECT count(*) AS events, coalesce(sum(x.amount), 0)::float8 AS total
        FROM outcomes x
        WHERE x.user_id = e.user_id AND x.kind = :kind
          AND (x.experiment IS NULL OR x.experiment = e.experiment_key)
          AND x.occurred_at >= e.exposed_at
          AND x.occurred_at < e.exposed_at + make_interval(days => :window_days)
    ) o
    WHERE e.experiment_key = :key
    GROUP BY e.variant
    """
)


async def variant_totals(
    session: AsyncSession, key: str, kind: str, window_days: int
) -> dict[str, Row[Any]]:
    rows = await session.execute(_RESULTS, {"key": key, "kind": kind, "window_days": window_days})
    return {r.variant: r for r in rows}
