"""Every SQL statement of the ledger. Accounts are always locked first, in user_id order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Text, and_, bindparam, column, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger.domain import SpendableLot
from services.rewards_ledger.models import (
    accounts,
    allocations,
    debit_voids,
    journal_entries,
    lots,
)
from shared.bulk import Bulk, KeyedRows
from shared.db import inline, violations

ACCOUNT_IDS = Bulk("accounts", {"user_id": "text"})
BALANCES = Bulk("accounts", {"user_id": "text", "balance": "bigint"})
LOTS = Bulk(
    "lots",
    {
        "id": "text",
        "user_id": "text",
        "origin": "text",
        "origin_ref": "text",
        "points": "bigint",
        "remaining": "bigint",
        "expires_at": "timestamptz",
    },
)
ENTRIES = Bulk(
    "journal_entries",
    {
        "user_id": "text",
        "kind": "text",
        "amount": "bigint",
        "balance_after": "bigint",
        "idempotency_key": "text",
        "lot_id": "text",
        "reference": "text",
        "reason": "text",
    },
)
LOCKED_ACCOUNTS = KeyedRows(ACCOUNT_IDS, "t.balance")
_SET_BALANCES = BALANCES.update(["user_id"], "balance = v.balance, updated_at = now()")
_INSERT_LOTS = LOTS.insert()
_INSERT_ENTRIES = ENTRIES.insert("RETURNING id, idempotency_key, created_at")
TAKEN = Bulk("lots", {"id": "text", "taken": "bigint"})
_TAKE_FROM_LOTS = TAKEN.update(["id"], "remaining = lots.remaining - v.taken")
ALLOCATIONS = Bulk(
    "allocations", {"journal_entry_id": "bigint", "lot_id": "text", "points": "bigint"}
)
_INSERT_ALLOCATIONS = ALLOCATIONS.insert()
# Every lot of these users with points left, past due or not (the caller splits them).
_ACTIVE_LOTS = text(
    "SELECT id, user_id, remaining, expires_at, created_at FROM lots "
    "WHERE user_id = ANY(CAST(:users AS text[])) AND status = 'active' AND remaining > 0 "
    "ORDER BY id FOR UPDATE"
)
_ENTRIES_BY_KEYS = text(
    "SELECT * FROM journal_entries WHERE idempotency_key = ANY(CAST(:keys AS text[]))"
).columns(*journal_entries.c)
# For each key: the journal entry that used it, or whether it was voided (one round trip).
_USED_KEYS = text(
    f"SELECT {', '.join(f'e.{c.name}' for c in journal_entries.c)}, k.key AS used_key, "
    "v.idempotency_key IS NOT NULL AS voided "
    "FROM unnest(CAST(:keys AS text[])) AS k(key) "
    "LEFT JOIN journal_entries e ON e.idempotency_key = k.key "
    "LEFT JOIN debit_voids v ON v.idempotency_key = k.key "
    "WHERE e.id IS NOT NULL OR v.idempotency_key IS NOT NULL"
).columns(*journal_entries.c, column("used_key", Text), column("voided", Boolean))


async def lock_accounts(
    session: AsyncSession, user_ids: Iterable[str], *, create: bool = True
) -> dict[str, int]:
    """Lock the accounts (in user_id order), creating missing ones unless `create` is False
    (then a user without an account is simply absent); returns their balances."""
    rows = await LOCKED_ACCOUNTS.lock(session, ((u,) for u in user_ids), create=create)
    return {user_id: row.balance for (user_id,), row in rows.items()}


async def lock_existing_accounts(
    session: AsyncSession, user_ids: Iterable[str], *, skip_locked: bool
) -> dict[str, int]:
    rows = await session.execute(
        select(accounts.c.user_id, accounts.c.balance)
        .where(accounts.c.user_id.in_(sorted(set(user_ids))))
        .order_by(accounts.c.user_id)
        .with_for_update(skip_locked=skip_locked)
    )
    return {r.user_id: r.balance for r in rows}


async def set_balances(session: AsyncSession, balances: dict[str, int]) -> None:
    if balances:
        await session.execute(
            _SET_BALANCES,
            BALANCES.params({"user_id": u, "balance": b} for u, b in balances.items()),
        )


async def insert_lots(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_INSERT_LOTS, LOTS.params(rows))


async def insert_entries(session: AsyncSession, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Append journal entries (ids ascending in input order); returns them with their ids and
    timestamps, in input order."""
    if not rows:
        return []
    result = await session.execute(_INSERT_ENTRIES, ENTRIES.params(rows))
    by_key = {r.idempotency_key: r for r in result}
    return [
        {
            **row,
            "id": by_key[row["idempotency_key"]].id,
            "created_at": by_key[row["idempotency_key"]].created_at,
        }
        for row in rows
    ]


async def entry_by_key(session: AsyncSession, key: str) -> Any:
    result = await session.execute(
        select(journal_entries).where(journal_entries.c.idempotency_key == key)
    )
    return result.one_or_none()


async def entries_by_keys(session: AsyncSession, keys: Sequence[str]) -> list[Any]:
    if not keys:
        return []
    return list(await session.execute(_ENTRIES_BY_KEYS, {"keys": list(keys)}))


async def used_keys(session: AsyncSession, keys: Sequence[str]) -> tuple[dict[str, Any], set[str]]:
    """(journal entry by key, for the keys already used; the rest of the keys that were
    voided)."""
    if not keys:
        return {}, set()
    entries: dict[str, Any] = {}
    voided: set[str] = set()
    for r in await session.execute(_USED_KEYS, {"keys": list(keys)}):
        if r.id is not None:
            entries[r.used_key] = r
        elif r.voided:
            voided.add(r.used_key)
    return entries, voided


async def void_of(session: AsyncSession, key: str) -> Any:
    result = await session.execute(select(debit_voids).where(debit_voids.c.idempotency_key == key))
    return result.one_or_none()


async def insert_void(session: AsyncSession, key: str, user_id: str, reason: str) -> Any:
    result = await session.execute(
        insert(debit_voids)
        .values(idempotency_key=key, user_id=user_id, reason=reason)
        .returning(*debit_voids.c)
    )
    return result.one()


async def lock_lots(session: AsyncSession, lot_ids: Sequence[str]) -> dict[str, Any]:
    if not lot_ids:
        return {}
    rows = await session.execute(
        select(lots.c.id, lots.c.status, lots.c.remaining, lots.c.expires_at)
        .where(lots.c.id.in_(list(lot_ids)))
        .order_by(lots.c.id)
        .with_for_update()
    )
    return {r.id: r for r in rows}


async def give_back_to_lots(session: AsyncSession, given: Sequence[tuple[str, int]]) -> None:
    if given:
        await session.execute(
            update(lots)
            .where(lots.c.id == bindparam("lot_id"))
            .values(remaining=lots.c.remaining + bindparam("given")),
            [{"lot_id": lot_id, "given": pts} for lot_id, pts in given],
        )


async def active_lots(
    session: AsyncSession, user_ids: Sequence[str], now: datetime
) -> tuple[dict[str, list[SpendableLot]], list[Any]]:
    """Every lot of these users with points left, locked (the caller holds their accounts'
    locks): the ones they can spend now, by user, and the ones past due, in the order
    `due_lots` gives them."""
    spendable: dict[str, list[SpendableLot]] = {u: [] for u in user_ids}
    if not user_ids:
        return spendable, []
    due = []
    for r in await session.execute(_ACTIVE_LOTS, {"users": list(user_ids)}):
        if r.expires_at is not None and r.expires_at <= now:
            due.append(r)
        else:
            spendable[r.user_id].append(SpendableLot(r.id, r.remaining, r.expires_at, r.created_at))
    due.sort(key=lambda r: (r.user_id, r.expires_at, r.id))
    return spendable, due


async def take_from_lots(session: AsyncSession, taken: Sequence[tuple[str, int]]) -> None:
    """Take points off lots; each lot at most once per call."""
    if taken:
        await session.execute(
            _TAKE_FROM_LOTS, TAKEN.params({"id": lot, "taken": pts} for lot, pts in taken)
        )


async def insert_allocations(session: AsyncSession, rows: Sequence[tuple[int, str, int]]) -> None:
    """(journal_entry_id, lot_id, points) rows."""
    if rows:
        await session.execute(
            _INSERT_ALLOCATIONS,
            ALLOCATIONS.params(
                {"journal_entry_id": e, "lot_id": lot, "points": pts} for e, lot, pts in rows
            ),
        )


async def allocations_of(
    session: AsyncSession, entry_ids: Sequence[int]
) -> dict[int, list[dict[str, Any]]]:
    if not entry_ids:
        return {}
    rows = await session.execute(
        select(
            allocations.c.journal_entry_id,
            allocations.c.lot_id,
            allocations.c.points,
            lots.c.expires_at,
        )
        .join(lots, lots.c.id == allocations.c.lot_id)
        .where(allocations.c.journal_entry_id.in_(entry_ids))
        .order_by(allocations.c.journal_entry_id, lots.c.expires_at.nulls_last(), lots.c.id)
    )
    out: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r.journal_entry_id, []).append(
            {"lot_id": r.lot_id, "points": r.points, "expires_at": r.expires_at}
        )
    return out


async def due_lots(session: AsyncSession, user_ids: Sequence[str], now: datetime) -> list[Any]:
    """Active lots with points left whose expiry has passed (caller holds the account locks)."""
    rows = await session.execute(
        select(lots.c.id, lots.c.user_id, lots.c.remaining, lots.c.expires_at)
        .where(
            lots.c.user_id.in_(list(user_ids)),
            lots.c.status == inline("active"),
            lots.c.remaining > inline(0),
            lots.c.expires_at <= now,
        )
        .order_by(lots.c.user_id, lots.c.expires_at, lots.c.id)
        .with_for_update()
    )
    return list(rows)


async def users_with_due_lots(session: AsyncSession, now: datetime, limit: int) -> list[str]:
    rows = await session.execute(
        select(lots.c.user_id)
        .where(
            lots.c.status == inline("active"),
            lots.c.remaining > inline(0),
            lots.c.expires_at <= now,
        )
        .group_by(lots.c.user_id)
        .order_by(func.min(lots.c.expires_at))
        .limit(limit)
    )
    return list(rows.scalars())


async def close_expired_lots(session: AsyncSession, lot_ids: Sequence[str]) -> None:
    if lot_ids:
        await session.execute(
            update(lots).where(lots.c.id.in_(list(lot_ids))).values(status="expired", remaining=0)
        )


async def mark_lots_expired(session: AsyncSession, lot_ids: Sequence[str]) -> None:
    """Close lots whose date has passed without touching what is left in them (nothing is)."""
    if lot_ids:
        await session.execute(
            update(lots).where(lots.c.id.in_(list(lot_ids))).values(status="expired")
        )


async def balance_of(session: AsyncSession, user_id: str) -> Any:
    result = await session.execute(select(accounts).where(accounts.c.user_id == user_id))
    return result.one_or_none()


async def upcoming_expiries(
    session: AsyncSession, user_id: str, now: datetime, until: datetime
) -> list[Any]:
    rows = await session.execute(
        select(
            func.date_trunc("day", lots.c.expires_at).label("day"),
            func.sum(lots.c.remaining).label("points"),
            func.min(lots.c.expires_at).label("first"),
        )
        .where(
            lots.c.user_id == user_id,
            lots.c.status == inline("active"),
            lots.c.remaining > inline(0),
            lots.c.expires_at > now,
            lots.c.expires_at <= until,
        )
        .group_by(text("1"))
        .order_by(text("1"))
    )
    return list(rows)


async def entries_page(
    session: AsyncSession, user_id: str, limit: int, before_id: int | None
) -> list[Any]:
    conditions = [journal_entries.c.user_id == user_id]
    if before_id is not None:
        conditions.append(journal_entries.c.id < before_id)
    rows = await session.execute(
        select(journal_entries)
        .where(and_(*conditions))
        .order_by(journal_entries.c.id.desc())
        .limit(limit)
    )
    return list(rows)


RECONCILIATION_CHECKS: dict[str, str] = {
    "balance_matches_lots": """
        SELECT a.user_id, a.balance, COALESCE(l.total, 0) AS lots_total
        FROM accounts a
        LEFT JOIN (SELECT user_id, sum(remaining) AS total FROM lots
                   WHERE status = 'active' GROUP BY user_id) l ON l.user_id = a.user_id
        WHERE a.balance <> COALESCE(l.total, 0)
        LIMIT 100""",
    "balance_matches_journal": """
        SELECT a.user_id, a.balance, COALESCE(j.total, 0) AS journal_total
        FROM accounts a
        LEFT JOIN (SELECT user_id, sum(amount) AS total FROM journal_entries GROUP BY user_id) j
               ON j.user_id = a.user_id
        WHERE a.balance <> COALESCE(j.total, 0)
        LIMIT 100""",
    "balance_matches_last_entry": """
        SELECT a.user_id, a.balance, last.balance_after
        FROM accounts a
        JOIN LATERAL (SELECT balance_after FROM journal_entries je
                      WHERE je.user_id = a.user_id ORDER BY id DESC LIMIT 1) last ON true
        WHERE a.balance <> last.balance_after
        LIMIT 100""",
    "journal_running_balance": """
        SELECT user_id, id, balance_after, running FROM (
            SELECT user_id, id, balance_after,
                   sum(amount) OVER (PARTITION BY user_id ORDER BY id) AS running
            FROM journal_entries) t
        WHERE balance_after <> running
        LIMIT 100""",
    "no_negative_amounts": """
        SELECT user_id, balance FROM accounts WHERE balance < 0
        UNION ALL SELECT user_id, remaining FROM lots WHERE remaining < 0
        LIMIT 100""",
    "debits_fully_allocated": """
        SELECT je.id, je.user_id, je.amount, COALESCE(sum(al.points), 0) AS allocated
        FROM journal_entries je LEFT JOIN allocations al ON al.journal_entry_id = je.id
        WHERE je.kind = 'debit'
        GROUP BY je.id, je.user_id, je.amount
        HAVING -je.amount <> COALESCE(sum(al.points), 0)
        LIMIT 100""",
    "refunds_fully_allocated": """
        SELECT je.id, je.user_id, je.amount, COALESCE(sum(al.points), 0) AS allocated
        FROM journal_entries je LEFT JOIN allocations al ON al.journal_entry_id = je.id
        WHERE je.kind = 'refund'
        GROUP BY je.id, je.user_id, je.amount
        HAVING je.amount <> COALESCE(sum(al.points), 0)
        LIMIT 100""",
    "refunds_match_their_debit": """
        SELECT r.id, r.user_id, r.amount, d.id AS debit_id, d.amount AS debit_amount
        FROM journal_entries r
        LEFT JOIN journal_entries d
               ON d.idempotency_key = 'debit:' || substr(r.idempotency_key, length('refund:') + 1)
        WHERE r.kind = 'refund' AND (d.id IS NULL OR d.user_id <> r.user_id
                                     OR d.amount <> -r.amount)
        LIMIT 100""",
    "refund_restores_the_lots_debited": """
        SELECT r.id AS refund_id, ra.lot_id, ra.points, da.points AS debited
        FROM journal_entries r
        JOIN allocations ra ON ra.journal_entry_id = r.id
        JOIN journal_entries d
          ON d.idempotency_key = 'debit:' || substr(r.idempotency_key, length('refund:') + 1)
        LEFT JOIN allocations da ON da.journal_entry_id = d.id AND da.lot_id = ra.lot_id
        WHERE r.kind = 'refund' AND ra.points IS DISTINCT FROM da.points
        LIMIT 100""",
    "no_debit_after_its_void": """
        SELECT v.idempotency_key, je.id
        FROM debit_voids v JOIN journal_entries je ON je.idempotency_key = v.idempotency_key
        LIMIT 100""",
    "lots_account_for_their_points": """
        SELECT l.id, l.user_id, l.points, l.remaining, COALESCE(al.used, 0) AS used,
               COALESCE(ex.expired, 0) AS expired
        FROM lots l
        LEFT JOIN (SELECT al.lot_id,
                          sum(CASE WHEN je.kind = 'refund' THEN -al.points ELSE al.points END)
                              AS used
                   FROM allocations al JOIN journal_entries je ON je.id = al.journal_entry_id
                   GROUP BY al.lot_id) al
               ON al.lot_id = l.id
        LEFT JOIN (SELECT lot_id, -sum(amount) AS expired FROM journal_entries
                   WHERE kind = 'expire' GROUP BY lot_id) ex ON ex.lot_id = l.id
        WHERE l.points <> l.remaining + COALESCE(al.used, 0) + COALESCE(ex.expired, 0)
        LIMIT 100""",
}


async def run_reconciliation(session: AsyncSession) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    accounts_checked = int(
        (await session.execute(select(func.count()).select_from(accounts))).scalar_one()
    )
    return accounts_checked, await violations(session, RECONCILIATION_CHECKS)
