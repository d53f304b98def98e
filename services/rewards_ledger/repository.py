"""Every SQL statement of the ledger. Accounts are always locked first, in (user_id, asset)
order, then their lots."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Text,
    and_,
    bindparam,
    column,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger.domain import Account, SpendableLot, Totals
from services.rewards_ledger.models import (
    accounts,
    allocations,
    assets,
    clawbacks,
    debit_voids,
    journal_entries,
    lot_extensions,
    lots,
)
from shared.bulk import Bulk, KeyedRows
from shared.db import inline, violations

ACCOUNT_KEYS = Bulk("accounts", {"user_id": "text", "asset": "text"})
TOTALS = Bulk(
    "accounts",
    {
        "user_id": "text",
        "asset": "text",
        "balance": "bigint",
        "pending": "bigint",
        "debt": "bigint",
    },
)
LOTS = Bulk(
    "lots",
    {
        "id": "text",
        "user_id": "text",
        "asset": "text",
        "origin": "text",
        "origin_ref": "text",
        "points": "bigint",
        "remaining": "bigint",
        "expires_at": "timestamptz",
        "available_at": "timestamptz",
        "status": "text",
    },
)
ENTRIES = Bulk(
    "journal_entries",
    {
        "user_id": "text",
        "asset": "text",
        "kind": "text",
        "amount": "bigint",
        "balance_after": "bigint",
        "pending_delta": "bigint",
        "debt_delta": "bigint",
        "idempotency_key": "text",
        "lot_id": "text",
        "reference": "text",
        "reason": "text",
    },
)
LOCKED_ACCOUNTS = KeyedRows(ACCOUNT_KEYS, "t.balance, t.pending, t.debt")
_SET_TOTALS = TOTALS.update(
    ["user_id", "asset"],
    "balance = v.balance, pending = v.pending, debt = v.debt, updated_at = now()",
)
_INSERT_LOTS = LOTS.insert()
_INSERT_NEW_LOTS = LOTS.insert("ON CONFLICT (id) DO NOTHING RETURNING id")
_INSERT_ENTRIES = ENTRIES.insert("RETURNING id, idempotency_key, created_at")
TAKEN = Bulk("lots", {"id": "text", "taken": "bigint"})
_TAKE_FROM_LOTS = TAKEN.update(
    ["id"],
    "remaining = lots.remaining - v.taken, "
    "status = CASE WHEN lots.status = 'pending' AND lots.remaining = v.taken "
    "THEN 'cancelled' ELSE lots.status END",
)
ALLOCATIONS = Bulk(
    "allocations", {"journal_entry_id": "bigint", "lot_id": "text", "points": "bigint"}
)
_INSERT_ALLOCATIONS = ALLOCATIONS.insert()
# Every active lot of these accounts with points left, past due or not (the caller splits them).
_ACTIVE_LOTS = text(
    "SELECT l.id, l.user_id, l.asset, l.remaining, l.expires_at, l.created_at FROM lots l "
    "JOIN unnest(CAST(:users AS text[]), CAST(:assets AS text[])) AS a(user_id, asset) "
    "ON l.user_id = a.user_id AND l.asset = a.asset "
    "WHERE l.status = 'active' AND l.remaining > 0 ORDER BY l.id FOR UPDATE OF l"
)
_ENTRIES_BY_KEYS = text(
    "SELECT * FROM journal_entries "
    "WHERE idempotency_key = ANY(CAST(:keys AS text[])) AND asset = :asset"
).columns(*journal_entries.c)
# For each (key, asset): the journal entry that used it, or whether it was voided.
_USED_KEYS = text(
    f"SELECT {', '.join(f'e.{c.name}' for c in journal_entries.c)}, k.key AS used_key, "
    "k.asset AS used_asset, v.idempotency_key IS NOT NULL AS voided "
    "FROM unnest(CAST(:keys AS text[]), CAST(:assets AS text[])) AS k(key, asset) "
    "LEFT JOIN journal_entries e ON e.idempotency_key = k.key AND e.asset = k.asset "
    "LEFT JOIN debit_voids v ON v.idempotency_key = k.key AND v.asset = k.asset "
    "WHERE e.id IS NOT NULL OR v.idempotency_key IS NOT NULL"
).columns(
    *journal_entries.c,
    column("used_key", Text),
    column("used_asset", Text),
    column("voided", Boolean),
)


def _pairs(accounts_: Iterable[Account]) -> dict[str, list[str]]:
    pairs = list(accounts_)
    return {"users": [u for u, _ in pairs], "assets": [a for _, a in pairs]}


async def lock_accounts(
    session: AsyncSession, keys: Iterable[Account], *, create: bool = True
) -> dict[Account, Totals]:
    """Lock the accounts (in (user_id, asset) order), creating missing ones unless `create`
    is False (then an account that does not exist is simply absent); returns what they hold."""
    rows = await LOCKED_ACCOUNTS.lock(session, keys, create=create)
    return {(u, a): Totals(r.balance, r.pending, r.debt) for (u, a), r in rows.items()}


async def lock_existing_accounts(
    session: AsyncSession, keys: Iterable[Account], *, skip_locked: bool
) -> dict[Account, Totals]:
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await session.execute(
        select(
            accounts.c.user_id,
            accounts.c.asset,
            accounts.c.balance,
            accounts.c.pending,
            accounts.c.debt,
        )
        .where(tuple_(accounts.c.user_id, accounts.c.asset).in_(wanted))
        .order_by(accounts.c.user_id, accounts.c.asset)
        .with_for_update(skip_locked=skip_locked)
    )
    return {(r.user_id, r.asset): Totals(r.balance, r.pending, r.debt) for r in rows}


async def set_totals(session: AsyncSession, totals: Mapping[Account, Totals]) -> None:
    if totals:
        await session.execute(
            _SET_TOTALS,
            TOTALS.params(
                {
                    "user_id": u,
                    "asset": a,
                    "balance": t.balance,
                    "pending": t.pending,
                    "debt": t.debt,
                }
                for (u, a), t in totals.items()
            ),
        )


async def insert_lots(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_INSERT_LOTS, LOTS.params(rows))


async def insert_new_lots(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    """Insert the lots not there yet; returns their ids. A lot's id comes from its credit's
    idempotency key, so one that exists was credited before; a concurrent transaction
    inserting the same id blocks here until it commits or rolls back (as an inbox would)."""
    if not rows:
        return set()
    return set((await session.execute(_INSERT_NEW_LOTS, LOTS.params(rows))).scalars())


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


async def entry_by_key(session: AsyncSession, key: str, asset: str) -> Any:
    result = await session.execute(
        select(journal_entries).where(
            journal_entries.c.idempotency_key == key, journal_entries.c.asset == asset
        )
    )
    return result.one_or_none()


async def entries_by_keys(session: AsyncSession, keys: Sequence[str], asset: str) -> list[Any]:
    if not keys:
        return []
    return list(await session.execute(_ENTRIES_BY_KEYS, {"keys": list(keys), "asset": asset}))


async def used_keys(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> tuple[dict[tuple[str, str], Any], set[tuple[str, str]]]:
    """For (journal key, asset) pairs: the journal entry of those already used, and the rest
    of them that were voided."""
    if not keys:
        return {}, set()
    entries: dict[tuple[str, str], Any] = {}
    voided: set[tuple[str, str]] = set()
    params = {"keys": [k for k, _ in keys], "assets": [a for _, a in keys]}
    for r in await session.execute(_USED_KEYS, params):
        if r.id is not None:
            entries[(r.used_key, r.used_asset)] = r
        elif r.voided:
            voided.add((r.used_key, r.used_asset))
    return entries, voided


async def void_of(session: AsyncSession, key: str, asset: str) -> Any:
    result = await session.execute(
        select(debit_voids).where(
            debit_voids.c.idempotency_key == key, debit_voids.c.asset == asset
        )
    )
    return result.one_or_none()


async def insert_void(
    session: AsyncSession, key: str, asset: str, user_id: str, reason: str
) -> Any:
    result = await session.execute(
        insert(debit_voids)
        .values(idempotency_key=key, asset=asset, user_id=user_id, reason=reason)
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
    session: AsyncSession, keys: Sequence[Account], now: datetime
) -> tuple[dict[Account, list[SpendableLot]], list[Any]]:
    """Every active lot of these accounts with points left, locked (the caller holds the
    accounts' locks): the ones they can spend now, by account, and the ones past due, in the
    order `due_lots` gives them."""
    spendable: dict[Account, list[SpendableLot]] = {k: [] for k in keys}
    if not keys:
        return spendable, []
    due = []
    for r in await session.execute(_ACTIVE_LOTS, _pairs(keys)):
        if r.expires_at is not None and r.expires_at <= now:
            due.append(r)
        else:
            spendable[(r.user_id, r.asset)].append(
                SpendableLot(r.id, r.remaining, r.expires_at, r.created_at)
            )
    due.sort(key=lambda r: (r.user_id, r.asset, r.expires_at, r.id))
    return spendable, due


async def take_from_lots(session: AsyncSession, taken: Sequence[tuple[str, int]]) -> None:
    """Take points off lots (each lot at most once per call); a pending lot emptied this way
    is cancelled."""
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


async def due_lots(session: AsyncSession, keys: Sequence[Account], now: datetime) -> list[Any]:
    """Active lots with points left whose expiry has passed (caller holds the account locks)."""
    if not keys:
        return []
    rows = await session.execute(
        select(
            lots.c.id,
            lots.c.user_id,
            lots.c.asset,
            lots.c.remaining,
            lots.c.expires_at,
            lots.c.created_at,
        )
        .where(
            tuple_(lots.c.user_id, lots.c.asset).in_(sorted(set(keys))),
            lots.c.status == inline("active"),
            lots.c.remaining > inline(0),
            lots.c.expires_at <= now,
        )
        .order_by(lots.c.user_id, lots.c.asset, lots.c.expires_at, lots.c.id)
        .with_for_update()
    )
    return list(rows)


async def accounts_with_due_lots(session: AsyncSession, now: datetime, limit: int) -> list[Account]:
    rows = await session.execute(
        select(lots.c.user_id, lots.c.asset)
        .where(
            lots.c.status == inline("active"),
            lots.c.remaining > inline(0),
            lots.c.expires_at <= now,
        )
        .group_by(lots.c.user_id, lots.c.asset)
        .order_by(func.min(lots.c.expires_at))
        .limit(limit)
    )
    return [(r.user_id, r.asset) for r in rows]


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


# --- pending lots ------------------------------------------------------------------------------


async def accounts_with_releasable_lots(
    session: AsyncSession, now: datetime, limit: int
) -> list[Account]:
    rows = await session.execute(
        select(lots.c.user_id, lots.c.asset)
        .where(
            lots.c.status == inline("pending"),
            lots.c.remaining > inline(0),
            lots.c.available_at <= now,
        )
        .group_by(lots.c.user_id, lots.c.asset)
        .order_by(func.min(lots.c.available_at))
        .limit(limit)
    )
    return [(r.user_id, r.asset) for r in rows]


async def releasable_lots(
    session: AsyncSession, keys: Sequence[Account], now: datetime
) -> list[Any]:
    """Pending lots of these (locked) accounts whose available_at has come, locked."""
    if not keys:
        return []
    rows = await session.execute(
        select(lots.c.id, lots.c.user_id, lots.c.asset, lots.c.remaining, lots.c.available_at)
        .where(
            tuple_(lots.c.user_id, lots.c.asset).in_(sorted(set(keys))),
            lots.c.status == inline("pending"),
            lots.c.remaining > inline(0),
            lots.c.available_at <= now,
        )
        .order_by(lots.c.user_id, lots.c.asset, lots.c.available_at, lots.c.id)
        .with_for_update()
    )
    return list(rows)


async def activate_lots(session: AsyncSession, lot_ids: Sequence[str]) -> None:
    if lot_ids:
        await session.execute(
            update(lots).where(lots.c.id.in_(list(lot_ids))).values(status="active")
        )


async def pending_lots_of(session: AsyncSession, user_id: str, asset: str) -> list[Any]:
    rows = await session.execute(
        select(lots.c.id, lots.c.remaining, lots.c.available_at, lots.c.origin_ref)
        .where(
            lots.c.user_id == user_id,
            lots.c.asset == asset,
            lots.c.status == inline("pending"),
            lots.c.remaining > inline(0),
        )
        .order_by(lots.c.available_at, lots.c.id)
    )
    return list(rows)


# --- clawbacks ---------------------------------------------------------------------------------


async def record_clawback_targets(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Raise each lot's clawback target (never lower it); rows: lot_id, grant_id, user_id,
    asset, target, reference, reason."""
    if not rows:
        return
    stmt = pg_insert(clawbacks).values(rows)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[clawbacks.c.lot_id],
            set_={
                "target": func.greatest(clawbacks.c.target, stmt.excluded.target),
                "reference": stmt.excluded.reference,
                "reason": stmt.excluded.reason,
                "updated_at": func.now(),
            },
        )
    )


# Only from the account that owns the lot: a clawback naming another is never applied. On the
# credit path of every batch of grants, so one prepared statement whatever the batch size.
_OPEN_CLAWBACKS = text(
    "SELECT c.* FROM clawbacks c JOIN lots l "
    "ON l.id = c.lot_id AND l.user_id = c.user_id AND l.asset = c.asset "
    "WHERE c.lot_id = ANY(CAST(:lots AS text[])) AND c.applied < c.target "
    "ORDER BY c.lot_id FOR UPDATE OF c"
).columns(*clawbacks.c)


async def open_clawbacks(session: AsyncSession, lot_ids: Sequence[str]) -> list[Any]:
    """Clawbacks of these lots with something left to reverse whose lot exists, locked."""
    if not lot_ids:
        return []
    return list(await session.execute(_OPEN_CLAWBACKS, {"lots": list(lot_ids)}))


async def set_clawback_applied(session: AsyncSession, lot_id: str, applied: int) -> None:
    await session.execute(
        update(clawbacks)
        .where(clawbacks.c.lot_id == lot_id)
        .values(applied=applied, updated_at=func.now())
    )


async def lot_of(session: AsyncSession, lot_id: str) -> Any:
    result = await session.execute(
        select(lots.c.id, lots.c.status, lots.c.remaining)
        .where(lots.c.id == lot_id)
        .with_for_update()
    )
    return result.one_or_none()


# --- extensions --------------------------------------------------------------------------------


async def extendable_lots(session: AsyncSession, user_id: str, asset: str) -> list[Any]:
    """Active lots of a (locked) account with points left, each with whether it was extended."""
    rows = await session.execute(
        select(
            lots.c.id,
            lots.c.remaining,
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
        )
        .order_by(lots.c.id)
        .with_for_update(of=lots)
    )
    return list(rows)


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


async def extensions_of(session: AsyncSession, entry_id: int) -> list[Any]:
    rows = await session.execute(
        select(lot_extensions, lots.c.remaining)
        .join(lots, lots.c.id == lot_extensions.c.lot_id)
        .where(lot_extensions.c.journal_entry_id == entry_id)
        .order_by(lot_extensions.c.old_expires_at, lot_extensions.c.lot_id)
    )
    return list(rows)


# --- assets ------------------------------------------------------------------------------------


async def all_assets(session: AsyncSession) -> list[Any]:
    return list(await session.execute(select(assets).order_by(assets.c.created_at, assets.c.code)))


async def asset_by_code(session: AsyncSession, code: str) -> Any:
    return (await session.execute(select(assets).where(assets.c.code == code))).one_or_none()


async def assets_by_codes(session: AsyncSession, codes: Iterable[str]) -> dict[str, Any]:
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    rows = await session.execute(select(assets).where(assets.c.code.in_(wanted)))
    return {r.code: r for r in rows}


async def insert_asset(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert an asset unless its code exists; True when inserted."""
    result = await session.execute(
        pg_insert(assets).values(**values).on_conflict_do_nothing().returning(assets.c.code)
    )
    return result.scalar_one_or_none() is not None


# --- views -------------------------------------------------------------------------------------


async def totals_of(session: AsyncSession, user_id: str, asset: str) -> Any:
    result = await session.execute(
        select(accounts).where(accounts.c.user_id == user_id, accounts.c.asset == asset)
    )
    return result.one_or_none()


async def accounts_of_user(session: AsyncSession, user_id: str) -> dict[str, Any]:
    rows = await session.execute(select(accounts).where(accounts.c.user_id == user_id))
    return {r.asset: r for r in rows}


async def upcoming_expiries(
    session: AsyncSession, user_id: str, asset: str, now: datetime, until: datetime
) -> list[Any]:
    rows = await session.execute(
        select(
            func.date_trunc("day", lots.c.expires_at).label("day"),
            func.sum(lots.c.remaining).label("points"),
            func.min(lots.c.expires_at).label("first"),
        )
        .where(
            lots.c.user_id == user_id,
            lots.c.asset == asset,
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
    session: AsyncSession, user_id: str, asset: str, limit: int, before_id: int | None
) -> list[Any]:
    conditions = [journal_entries.c.user_id == user_id, journal_entries.c.asset == asset]
    if before_id is not None:
        conditions.append(journal_entries.c.id < before_id)
    rows = await session.execute(
        select(journal_entries)
        .where(and_(*conditions))
        .order_by(journal_entries.c.id.desc())
        .limit(limit)
    )
    return list(rows)


# --- liability ---------------------------------------------------------------------------------

_LIABILITY_TOTALS = text(
    "SELECT COALESCE(sum(balance), 0) AS outstanding, COALESCE(sum(pending), 0) AS pending, "
    "COALESCE(sum(debt), 0) AS debt, count(*) FILTER (WHERE balance > 0) AS holders "
    "FROM accounts WHERE asset = :asset"
)
_LIABILITY_EXPIRING = text(
    "SELECT to_char(expires_at AT TIME ZONE :tz, 'YYYY-MM') AS month, "
    "sum(remaining) AS points FROM lots "
    "WHERE status = 'active' AND remaining > 0 AND asset = :asset "
    "AND expires_at > :now AND expires_at < :until GROUP BY 1 ORDER BY 1"
)
_LIABILITY_FLOWS = text(
    "SELECT kind, COALESCE(sum(amount), 0) AS amount, COALESCE(sum(pending_delta), 0) AS pending, "
    "COALESCE(sum(debt_delta), 0) AS debt FROM journal_entries "
    "WHERE asset = :asset AND created_at >= :since GROUP BY kind"
)


async def liability(
    session: AsyncSession, asset: str, now: datetime, until: datetime, since: datetime, tz: str
) -> tuple[Any, list[Any], list[Any]]:
    """(totals over the asset's accounts, points expiring by month until `until`, the
    journal's movements by kind since `since`): set-based, whatever the number of rows."""
    totals = (await session.execute(_LIABILITY_TOTALS, {"asset": asset})).one()
    expiring = list(
        await session.execute(
            _LIABILITY_EXPIRING, {"asset": asset, "now": now, "until": until, "tz": tz}
        )
    )
    flows = list(await session.execute(_LIABILITY_FLOWS, {"asset": asset, "since": since}))
    return totals, expiring, flows


# --- reconciliation ----------------------------------------------------------------------------

# The kinds whose allocations take points out of lots (a refund's give them back).
_TAKING_KINDS = "('debit', 'clawback', 'debt_repaid', 'extension')"

RECONCILIATION_CHECKS: dict[str, str] = {
    "balance_matches_lots": """
        SELECT a.user_id, a.asset, a.balance, a.pending, COALESCE(l.active, 0) AS active_lots,
               COALESCE(l.pending, 0) AS pending_lots
        FROM accounts a
        LEFT JOIN (SELECT user_id, asset,
                          sum(remaining) FILTER (WHERE status = 'active') AS active,
                          sum(remaining) FILTER (WHERE status = 'pending') AS pending
                   FROM lots GROUP BY user_id, asset) l
               ON l.user_id = a.user_id AND l.asset = a.asset
        WHERE a.balance <> COALESCE(l.active, 0) OR a.pending <> COALESCE(l.pending, 0)
        LIMIT 100""",
    "balance_matches_journal": """
        SELECT a.user_id, a.asset, a.balance, a.pending, a.debt, j.balance AS journal_balance,
               j.pending AS journal_pending, j.debt AS journal_debt
        FROM accounts a
        LEFT JOIN (SELECT user_id, asset, sum(amount) AS balance, sum(pending_delta) AS pending,
                          sum(debt_delta) AS debt
                   FROM journal_entries GROUP BY user_id, asset) j
               ON j.user_id = a.user_id AND j.asset = a.asset
        WHERE a.balance <> COALESCE(j.balance, 0) OR a.pending <> COALESCE(j.pending, 0)
           OR a.debt <> COALESCE(j.debt, 0)
        LIMIT 100""",
    "balance_matches_last_entry": """
        SELECT a.user_id, a.asset, a.balance, last.balance_after
        FROM accounts a
        JOIN LATERAL (SELECT balance_after FROM journal_entries je
                      WHERE je.user_id = a.user_id AND je.asset = a.asset
                      ORDER BY id DESC LIMIT 1) last ON true
        WHERE a.balance <> last.balance_after
        LIMIT 100""",
    "journal_running_balance": """
        SELECT user_id, asset, id, balance_after, running FROM (
            SELECT user_id, asset, id, balance_after,
                   sum(amount) OVER (PARTITION BY user_id, asset ORDER BY id) AS running
            FROM journal_entries) t
        WHERE balance_after <> running
        LIMIT 100""",
    "no_negative_amounts": """
        SELECT user_id, asset, balance, pending, debt FROM accounts
        WHERE balance < 0 OR pending < 0 OR debt < 0
        UNION ALL SELECT user_id, asset, remaining, 0, 0 FROM lots WHERE remaining < 0
        LIMIT 100""",
    "debt_only_while_nothing_is_available": """
        SELECT user_id, asset, balance, debt FROM accounts WHERE debt > 0 AND balance > 0
        LIMIT 100""",
    "non_spendable_assets_never_spent": """
        SELECT je.id, je.user_id, je.asset, je.kind FROM journal_entries je
        JOIN assets s ON s.code = je.asset
        WHERE NOT s.spendable AND je.kind IN ('debit', 'extension')
        LIMIT 100""",
    "takings_fully_allocated": f"""
        SELECT je.id, je.user_id, je.kind, je.amount, je.pending_delta,
               COALESCE(sum(al.points), 0) AS allocated
        FROM journal_entries je LEFT JOIN allocations al ON al.journal_entry_id = je.id
        WHERE je.kind IN {_TAKING_KINDS}
        GROUP BY je.id, je.user_id, je.kind, je.amount, je.pending_delta
        HAVING -(je.amount + je.pending_delta) <> COALESCE(sum(al.points), 0)
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
              AND d.asset = r.asset
        WHERE r.kind = 'refund' AND (d.id IS NULL OR d.user_id <> r.user_id
                                     OR d.amount <> -r.amount)
        LIMIT 100""",
    "refund_restores_the_lots_debited": """
        SELECT r.id AS refund_id, ra.lot_id, ra.points, da.points AS debited
        FROM journal_entries r
        JOIN allocations ra ON ra.journal_entry_id = r.id
        JOIN journal_entries d
          ON d.idempotency_key = 'debit:' || substr(r.idempotency_key, length('refund:') + 1)
         AND d.asset = r.asset
        LEFT JOIN allocations da ON da.journal_entry_id = d.id AND da.lot_id = ra.lot_id
        WHERE r.kind = 'refund' AND ra.points IS DISTINCT FROM da.points
        LIMIT 100""",
    "no_debit_after_its_void": """
        SELECT v.idempotency_key, v.asset, je.id
        FROM debit_voids v JOIN journal_entries je
          ON je.idempotency_key = v.idempotency_key AND je.asset = v.asset
        LIMIT 100""",
    "clawbacks_match_their_entries": """
        SELECT c.lot_id, c.target, c.applied, COALESCE(j.reversed, 0) AS reversed, l.points
        FROM clawbacks c
        LEFT JOIN lots l ON l.id = c.lot_id
        LEFT JOIN (SELECT lot_id, sum(-amount - pending_delta + debt_delta) AS reversed
                   FROM journal_entries WHERE kind = 'clawback' GROUP BY lot_id) j
               ON j.lot_id = c.lot_id
        WHERE c.applied <> COALESCE(j.reversed, 0) OR c.applied > COALESCE(l.points, 0)
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
