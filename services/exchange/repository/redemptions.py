"""Redemption rows: inserting a batch, finishing (each moves out of the state its finisher
expects, or not at all), leasing the unfinished, the pages. Rows come back typed as the table's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Row, column, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange.models import redemptions
from shared.bulk import Bulk
from shared.db import inline


@dataclass(frozen=True, slots=True)
class FailureInfo:
    code: str
    message: str | None


@dataclass(frozen=True, slots=True)
class FulfilmentInfo:
    status: str | None
    shipping_address: str | None
    carrier: str | None
    tracking_number: str | None


@dataclass(frozen=True, slots=True)
class Redemption:
    """A redemption row as read (`schemas.RedemptionOut` reads it, `failure` and
    `fulfilment` included). `held_stock` is set only by `finish_redemptions`: whether it
    held stock before it moved."""

    id: str
    user_id: str
    idempotency_key: str
    item_id: str
    item_type: str
    item_name: str
    quantity: int
    points: int
    status: str
    holds_stock: bool
    limit_period_key: str | None
    failure_code: str | None
    failure_message: str | None
    compensated: bool
    ledger_entry_id: int | None
    balance_after: int | None
    reward: dict[str, Any] | None
    fulfilment_status: str | None
    shipping_address: str | None
    carrier: str | None
    tracking_number: str | None
    cancel_reason: str | None
    cancelled_by: str | None
    refund_entry_id: int | None
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    held_stock: bool | None = None

    @classmethod
    def of(cls, row: Row[Any]) -> Redemption:
        return cls(**row._mapping)

    @property
    def failure(self) -> FailureInfo | None:
        if not self.failure_code:
            return None
        return FailureInfo(self.failure_code, self.failure_message)

    @property
    def fulfilment(self) -> FulfilmentInfo | None:
        if self.item_type != "physical":
            return None
        return FulfilmentInfo(
            self.fulfilment_status, self.shipping_address, self.carrier, self.tracking_number
        )


# Batch statements (fixed text, see shared/bulk.py). Rows come back typed as the table's.
_REDEMPTION_COLUMNS = ", ".join(f"redemptions.{c.name}" for c in redemptions.c)
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


async def insert_redemptions(
    session: AsyncSession, rows: list[dict[str, Any]]
) -> dict[str, Redemption]:
    """Insert each row unless its user already used its idempotency key; returns the rows
    inserted, by id. Rows go in (user_id, key) order, so two batches never wait on each
    other's keys in opposite orders."""
    if not rows:
        return {}
    ordered = sorted(rows, key=lambda r: (r["user_id"], r["idempotency_key"]))
    result = await session.execute(_INSERT_REDEMPTIONS, NEW_REDEMPTIONS.params(ordered))
    return {r.id: Redemption.of(r) for r in result}


async def redemptions_by_keys(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Redemption]:
    """Redemptions by (user_id, idempotency_key)."""
    if not keys:
        return {}
    rows = await session.execute(
        _REDEMPTIONS_BY_KEYS, {"users": [u for u, _ in keys], "keys": [k for _, k in keys]}
    )
    return {(r.user_id, r.idempotency_key): Redemption.of(r) for r in rows}


async def finish_redemptions(
    session: AsyncSession, finishes: Sequence[Mapping[str, Any]]
) -> dict[str, Redemption]:
    """Move each redemption out of its `expected` state (see FINISHES for the keys; `release`
    gives up the stock it holds). Returns the rows that moved, by id, each with `held_stock`:
    whether it held stock before. A row found in another state is left alone and absent."""
    if not finishes:
        return {}
    rows = [{c: f.get(c) for c in FINISHES.columns} for f in finishes]
    result = await session.execute(_FINISH_REDEMPTIONS, FINISHES.params(rows))
    return {r.id: Redemption.of(r) for r in result}


async def set_rewards(session: AsyncSession, rewards: Mapping[str, Any]) -> dict[str, Redemption]:
    """Write the reward of redemptions whose locks the caller holds; returns them by id."""
    if not rewards:
        return {}
    rows = [{"id": i, "reward": reward} for i, reward in rewards.items()]
    result = await session.execute(_SET_REWARDS, REWARDS.params(rows))
    return {r.id: Redemption.of(r) for r in result}


async def redemptions_by_ids(session: AsyncSession, ids: Sequence[str]) -> dict[str, Redemption]:
    if not ids:
        return {}
    rows = await session.execute(_REDEMPTIONS_BY_IDS, {"ids": list(ids)})
    return {r.id: Redemption.of(r) for r in rows}


async def get_redemption(
    session: AsyncSession, redemption_id: str, *, lock: bool = False
) -> Redemption | None:
    stmt = select(redemptions).where(redemptions.c.id == redemption_id)
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).one_or_none()
    return None if row is None else Redemption.of(row)


async def update_redemption(
    session: AsyncSession, redemption_id: str, values: dict[str, Any]
) -> Redemption:
    result = await session.execute(
        update(redemptions)
        .where(redemptions.c.id == redemption_id)
        .values(**values, updated_at=func.now())
        .returning(*redemptions.c)
    )
    return Redemption.of(result.one())


async def claim_unfinished(
    session: AsyncSession, now: datetime, lease_until: datetime, limit: int
) -> list[Redemption]:
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
    return [Redemption.of(r) for r in result]


async def user_redemptions(
    session: AsyncSession, user_id: str, status: str | None, limit: int, offset: int
) -> list[Redemption]:
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
    return [Redemption.of(r) for r in rows]


async def fulfilment_queue(
    session: AsyncSession, fulfilment_status: str, user_id: str | None, limit: int, offset: int
) -> list[Redemption]:
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
    return [Redemption.of(r) for r in rows]
