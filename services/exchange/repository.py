"""Every SQL statement of the exchange. Stock moves only through conditional updates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, and_, column, func, insert, or_, select, text, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange.domain import CatalogQuery
from services.exchange.models import (
    coupons,
    items,
    member_tiers,
    memberships,
    purchase_counters,
    redemptions,
    tier_ladder,
)
from shared.bulk import Bulk
from shared.db import inline, violations

# Batch statements (fixed text, see shared/bulk.py). Rows come back typed as the table's.
_ITEM_COLUMNS = ", ".join(f"items.{c.name}" for c in items.c)
_REDEMPTION_COLUMNS = ", ".join(f"redemptions.{c.name}" for c in redemptions.c)
_ITEMS_BY_IDS = text(
    f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = ANY(CAST(:ids AS text[]))"
).columns(*items.c)
_REDEMPTIONS_BY_KEYS = text(
    f"SELECT {_REDEMPTION_COLUMNS} FROM redemptions "
    "JOIN unnest(CAST(:users AS text[]), CAST(:keys AS text[])) AS k(user_id, key) "
    "ON redemptions.user_id = k.user_id AND redemptions.idempotency_key = k.key"
).columns(*redemptions.c)
NEW_REDEMPTIONS = Bulk(
    "redemptions",
    {
        "id": "text",
        "user_id": "text",
        "idempotency_key": "text",
        "item_id": "text",
        "item_type": "text",
        "item_name": "text",
        "quantity": "integer",
        "points": "bigint",
        "status": "text",
        "holds_stock": "boolean",
        "limit_period_key": "text",
        "shipping_address": "text",
        "next_attempt_at": "timestamptz",
    },
)
_INSERT_REDEMPTIONS = NEW_REDEMPTIONS.insert(
    f"ON CONFLICT ON CONSTRAINT uq_redemptions_user_key DO NOTHING RETURNING {_REDEMPTION_COLUMNS}"
).columns(*redemptions.c)
# What finishing (or refusing) a redemption may change; the rest of a row never moves here.
# Finishing redemptions: each moves out of the state its finisher expects, or not at all.
# Only the outcome columns a finish sets are given; a NULL keeps what the row holds.
FINISHES = Bulk(
    "redemptions",
    {
        "id": "text",
        "expected": "text",
        "status": "text",
        "release": "boolean",
        "failure_code": "text",
        "failure_message": "text",
        "compensated": "boolean",
        "ledger_entry_id": "bigint",
        "balance_after": "bigint",
        "reward": "jsonb",
        "fulfilment_status": "text",
        "refund_entry_id": "bigint",
    },
)
_KEPT_UNLESS_GIVEN = (
    "failure_code",
    "failure_message",
    "compensated",
    "ledger_entry_id",
    "balance_after",
    "fulfilment_status",
    "refund_entry_id",
)
# One statement takes the row locks (in id order, as every finisher takes them, so two
# finishers never deadlock), re-checks each row's state under its lock and writes the outcome.
_FINISH_REDEMPTIONS = text(
    f"WITH v AS MATERIALIZED (SELECT * FROM {FINISHES.source()}), "
    "due AS MATERIALIZED (SELECT r.id, r.holds_stock FROM redemptions r "
    "JOIN v ON v.id = r.id AND r.status = v.expected ORDER BY r.id FOR UPDATE OF r) "
    "UPDATE redemptions SET status = v.status, "
    "holds_stock = redemptions.holds_stock AND NOT v.release, "
    + "".join(f"{c} = coalesce(v.{c}, redemptions.{c}), " for c in _KEPT_UNLESS_GIVEN)
    + "reward = coalesce(CAST(v.reward AS jsonb), redemptions.reward), "
    "next_attempt_at = NULL, updated_at = now() "
    "FROM v JOIN due ON due.id = v.id WHERE redemptions.id = due.id "
    f"RETURNING {_REDEMPTION_COLUMNS}, due.holds_stock AS held_stock"
).columns(*redemptions.c, column("held_stock", Boolean))
REWARDS = Bulk("redemptions", {"id": "text", "reward": "jsonb"})
_SET_REWARDS = REWARDS.update(
    ["id"],
    "reward = CAST(v.reward AS jsonb), updated_at = now()",
    f"RETURNING {_REDEMPTION_COLUMNS}",
).columns(*redemptions.c)
_REDEMPTIONS_BY_IDS = text(
    f"SELECT {_REDEMPTION_COLUMNS} FROM redemptions WHERE id = ANY(CAST(:ids AS text[]))"
).columns(*redemptions.c)
COUPONS = Bulk(
    "coupons",
    {
        "code": "text",
        "redemption_id": "text",
        "user_id": "text",
        "item_id": "text",
        "value_cents": "bigint",
        "expires_at": "timestamptz",
    },
)
_INSERT_COUPONS = COUPONS.insert()


def _available(now: datetime) -> Any:
    return and_(
        items.c.active.is_(True),
        or_(items.c.starts_at.is_(None), items.c.starts_at <= now),
        or_(items.c.ends_at.is_(None), items.c.ends_at > now),
    )


# -- catalog ---------------------------------------------------------------------------


async def insert_item(session: AsyncSession, row: dict[str, Any]) -> dict[str, Any]:
    result = await session.execute(insert(items).values(**row).returning(*items.c))
    return dict(result.one()._mapping)


async def get_items(session: AsyncSession, item_ids: Sequence[str]) -> dict[str, Any]:
    if not item_ids:
        return {}
    rows = await session.execute(_ITEMS_BY_IDS, {"ids": sorted(set(item_ids))})
    return {r.id: r for r in rows}


async def get_item(session: AsyncSession, item_id: str, *, lock: bool = False) -> Any:
    stmt = select(items).where(items.c.id == item_id)
    if lock:
        # FOR NO KEY UPDATE, like the stock updates: a plain FOR UPDATE would also wait for
        # the key-share locks that inserting a redemption takes on its item (the foreign
        # key), and deadlock with a redeemer that holds one and waits for this row.
        stmt = stmt.with_for_update(key_share=True)
    return (await session.execute(stmt)).one_or_none()


async def update_item(session: AsyncSession, item_id: str, values: dict[str, Any]) -> Any:
    result = await session.execute(
        update(items)
        .where(items.c.id == item_id)
        .values(**values, updated_at=func.now())
        .returning(*items.c)
    )
    return result.one()


async def list_items(
    session: AsyncSession, query: CatalogQuery, now: datetime
) -> tuple[list[Any], int]:
    conditions: list[Any] = []
    if not query.include_unavailable:
        conditions.append(_available(now))
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
    return list(rows), int(total)


async def affordable_candidates(
    session: AsyncSession, now: datetime, balance: int, limit: int
) -> list[Any]:
    rows = await session.execute(
        select(items)
        .where(_available(now), items.c.stock > 0, items.c.points_price <= balance)
        .order_by(items.c.points_price.desc(), items.c.id)
        .limit(limit)
    )
    return list(rows)


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


# -- redemptions ------------------------------------------------------------------------


async def insert_redemptions(session: AsyncSession, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Insert each row unless its user already used its idempotency key; returns the rows
    inserted, by id. Rows go in (user_id, key) order, so two batches never wait on each
    other's keys in opposite orders."""
    if not rows:
        return {}
    ordered = sorted(rows, key=lambda r: (r["user_id"], r["idempotency_key"]))
    result = await session.execute(_INSERT_REDEMPTIONS, NEW_REDEMPTIONS.params(ordered))
    return {r.id: r for r in result}


async def redemptions_by_keys(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Any]:
    """Redemptions by (user_id, idempotency_key)."""
    if not keys:
        return {}
    rows = await session.execute(
        _REDEMPTIONS_BY_KEYS, {"users": [u for u, _ in keys], "keys": [k for _, k in keys]}
    )
    return {(r.user_id, r.idempotency_key): r for r in rows}


async def finish_redemptions(
    session: AsyncSession, finishes: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Move each redemption out of its `expected` state (see FINISHES for the keys; `release`
    gives up the stock it holds). Returns the rows that moved, by id, each with `held_stock`:
    whether it held stock before. A row found in another state is left alone and absent."""
    if not finishes:
        return {}
    rows = [{c: f.get(c) for c in FINISHES.columns} for f in finishes]
    result = await session.execute(_FINISH_REDEMPTIONS, FINISHES.params(rows))
    return {r.id: r for r in result}


async def set_rewards(session: AsyncSession, rewards: Mapping[str, Any]) -> dict[str, Any]:
    """Write the reward of redemptions whose locks the caller holds; returns them by id."""
    if not rewards:
        return {}
    rows = [{"id": i, "reward": reward} for i, reward in rewards.items()]
    result = await session.execute(_SET_REWARDS, REWARDS.params(rows))
    return {r.id: r for r in result}


async def redemptions_by_ids(session: AsyncSession, ids: Sequence[str]) -> dict[str, Any]:
    if not ids:
        return {}
    rows = await session.execute(_REDEMPTIONS_BY_IDS, {"ids": list(ids)})
    return {r.id: r for r in rows}


async def get_redemption(session: AsyncSession, redemption_id: str, *, lock: bool = False) -> Any:
    stmt = select(redemptions).where(redemptions.c.id == redemption_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).one_or_none()


async def update_redemption(
    session: AsyncSession, redemption_id: str, values: dict[str, Any]
) -> Any:
    result = await session.execute(
        update(redemptions)
        .where(redemptions.c.id == redemption_id)
        .values(**values, updated_at=func.now())
        .returning(*redemptions.c)
    )
    return result.one()


async def claim_unfinished(
    session: AsyncSession, now: datetime, lease_until: datetime, limit: int
) -> list[Any]:
    """Lease due pending/cancelling redemptions to this replica (others skip them)."""
    due = (
        select(redemptions.c.id)
        .where(
            redemptions.c.status.in_([inline("pending"), inline("cancelling")]),
            redemptions.c.next_attempt_at <= now,
        )
        .order_by(redemptions.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    result = await session.execute(
        update(redemptions)
        .where(redemptions.c.id.in_(select(due.c.id)))
        .values(next_attempt_at=lease_until, attempts=redemptions.c.attempts + 1)
        .returning(*redemptions.c)
    )
    return list(result)


async def user_redemptions(
    session: AsyncSession, user_id: str, status: str | None, limit: int, offset: int
) -> list[Any]:
    conditions = [redemptions.c.user_id == user_id]
    if status is not None:
        conditions.append(redemptions.c.status == status)
    rows = await session.execute(
        select(redemptions)
        .where(*conditions)
        .order_by(redemptions.c.created_at.desc(), redemptions.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows)


async def fulfilment_queue(
    session: AsyncSession, fulfilment_status: str, user_id: str | None, limit: int, offset: int
) -> list[Any]:
    """Physical redemptions at one fulfilment step, oldest first (the shipping queue)."""
    conditions = [redemptions.c.fulfilment_status == fulfilment_status]
    if user_id is not None:
        conditions.append(redemptions.c.user_id == user_id)
    rows = await session.execute(
        select(redemptions)
        .where(*conditions)
        .order_by(redemptions.c.created_at, redemptions.c.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows)


# -- rewards ----------------------------------------------------------------------------


async def insert_coupons(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_INSERT_COUPONS, COUPONS.params(rows))


async def revoke_coupons(session: AsyncSession, redemption_id: str) -> None:
    await session.execute(
        update(coupons).where(coupons.c.redemption_id == redemption_id).values(status="revoked")
    )


async def lock_membership(session: AsyncSession, user_id: str) -> datetime | None:
    result = await session.execute(
        select(memberships.c.vip_until).where(memberships.c.user_id == user_id).with_for_update()
    )
    return result.scalar_one_or_none()


async def set_membership(session: AsyncSession, user_id: str, vip_until: datetime) -> None:
    stmt = pg_insert(memberships).values(user_id=user_id, vip_until=vip_until)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[memberships.c.user_id],
            set_={"vip_until": stmt.excluded.vip_until, "updated_at": func.now()},
        )
    )


# -- reconciliation ---------------------------------------------------------------------

RECONCILIATION_CHECKS: dict[str, str] = {
    "stock_accounts_for_every_unit": """
        SELECT i.id, i.stock, i.stock_total, COALESCE(r.held, 0) AS held
        FROM items i
        LEFT JOIN (SELECT item_id, sum(quantity) AS held FROM redemptions
                   WHERE holds_stock GROUP BY item_id) r ON r.item_id = i.id
        WHERE i.stock + COALESCE(r.held, 0) <> i.stock_total
        LIMIT 100""",
    "units_held_only_by_live_redemptions": """
        SELECT id, status, holds_stock FROM redemptions
        WHERE holds_stock <> (status IN ('pending', 'completed', 'cancelling'))
        LIMIT 100""",
    "limit_counters_match_redemptions": """
        SELECT c.user_id, c.item_id, c.period_key, c.quantity, COALESCE(r.held, 0) AS held
        FROM purchase_counters c
        LEFT JOIN (SELECT user_id, item_id, limit_period_key, sum(quantity) AS held
                   FROM redemptions WHERE holds_stock AND limit_period_key IS NOT NULL
                   GROUP BY user_id, item_id, limit_period_key) r
               ON r.user_id = c.user_id AND r.item_id = c.item_id
              AND r.limit_period_key = c.period_key
        WHERE c.quantity <> COALESCE(r.held, 0)
        LIMIT 100""",
    "completed_redemptions_have_their_reward": """
        SELECT id, item_type, status FROM redemptions
        WHERE status IN ('completed', 'cancelling', 'cancelled') AND reward IS NULL
        LIMIT 100""",
    "coupons_issued_once_per_unit": """
        SELECT r.id, r.quantity, count(c.code) AS coupons
        FROM redemptions r LEFT JOIN coupons c ON c.redemption_id = r.id
        WHERE r.item_type = 'coupon' AND r.reward IS NOT NULL
        GROUP BY r.id, r.quantity
        HAVING count(c.code) <> r.quantity
        LIMIT 100""",
    "completed_redemptions_were_debited": """
        SELECT id, status FROM redemptions
        WHERE status IN ('completed', 'cancelling', 'cancelled') AND ledger_entry_id IS NULL
        LIMIT 100""",
}


async def run_reconciliation(
    session: AsyncSession, stuck_before: datetime
) -> tuple[dict[str, int], dict[str, list[dict[str, Any]]]]:
    failures = await violations(session, RECONCILIATION_CHECKS)
    stuck = (
        (
            await session.execute(
                select(redemptions.c.id, redemptions.c.status, redemptions.c.created_at)
                .where(
                    redemptions.c.status.in_([inline("pending"), inline("cancelling")]),
                    redemptions.c.updated_at < stuck_before,
                )
                .limit(100)
            )
        )
        .mappings()
        .all()
    )
    if stuck:
        failures["nothing_unfinished_for_long"] = [dict(r) for r in stuck]
    counts = {
        r.status: int(r.n)
        for r in await session.execute(
            select(redemptions.c.status, func.count().label("n")).group_by(redemptions.c.status)
        )
    }
    return counts, failures


# -- member tiers (the read model of engagement's tier.changed) -------------------------------


async def tier_levels(
    session: AsyncSession, user_ids: Sequence[str], codes: Sequence[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """(user -> level of their tier, tier code -> level) as last heard from engagement. A
    user never heard of holds the ladder's base tier when its lowest tier needs no growth."""
    rows = (
        await session.execute(
            select(tier_ladder.c.code, tier_ladder.c.level, tier_ladder.c.min_growth)
        )
    ).all()
    ladder = {r.code: int(r.level) for r in rows}
    base = next((int(r.level) for r in rows if r.level == 1 and r.min_growth <= 0), 0)
    members = await session.execute(
        select(member_tiers.c.user_id, member_tiers.c.tier).where(
            member_tiers.c.user_id.in_(sorted(set(user_ids)))
        )
    )
    users = {u: base for u in user_ids}
    for m in members:
        users[m.user_id] = ladder.get(m.tier, 0) if m.tier is not None else 0
    return users, {c: ladder[c] for c in codes if c in ladder}


async def save_member_tiers(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Record users' tiers; a row only moves forward in `sequence`."""
    if not rows:
        return
    stmt = pg_insert(member_tiers).values(sorted(rows, key=lambda r: r["user_id"]))
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["user_id"],
            set_={
                "tier": stmt.excluded.tier,
                "sequence": stmt.excluded.sequence,
                "updated_at": func.now(),
            },
            where=member_tiers.c.sequence < stmt.excluded.sequence,
        )
    )


async def save_ladder(session: AsyncSession, version: int, ladder: list[dict[str, Any]]) -> None:
    """Replace the ladder's order with `version`'s, unless a newer one is already here."""
    await session.execute(text("LOCK TABLE tier_ladder IN EXCLUSIVE MODE"))
    current = (
        await session.execute(select(func.coalesce(func.max(tier_ladder.c.version), 0)))
    ).scalar_one()
    if version < int(current):
        return
    await session.execute(tier_ladder.delete())
    if ladder:
        await session.execute(
            insert(tier_ladder),
            [
                {
                    "code": t["code"],
                    "level": i + 1,
                    "min_growth": t["min_growth"],
                    "version": version,
                }
                for i, t in enumerate(ladder)
            ],
        )
