"""The floor of the ledger's SQL: account locks and totals, the journal, allocations, and
the lots every movement spends or expires. Accounts are always locked first, in
(user_id, asset) order, then their lots."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger.domain import Account, SpendableLot, Totals
from services.rewards_ledger.models import accounts, allocations, journal_entries, lots
from services.rewards_ledger.repository.rows import DueLot, JournalEntry, row_as
from shared.bulk import Bulk, KeyedRows
from shared.db import inline

ACCOUNT_KEYS = Bulk("accounts", {"user_id": "text", "asset": "text"})
TOTALS = Bulk(
    "accounts",
    {
        "user_id": "text",
        "asset": "text",
        "balance": "bigint",
        "pending": "bigint",
        "debt": "bigint",
        "held": "bigint",
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
        "held_delta": "bigint",
        "idempotency_key": "text",
        "lot_id": "text",
        "reference": "text",
        "reason": "text",
    },
)
LOCKED_ACCOUNTS = KeyedRows(ACCOUNT_KEYS, "t.balance, t.pending, t.debt, t.held")
_SET_TOTALS = TOTALS.update(
    ["user_id", "asset"],
    "balance = v.balance, pending = v.pending, debt = v.debt, held = v.held, updated_at = now()",
)


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
# Every active lot of these accounts with points no hold reserves, past due or not (the caller
# splits them); `remaining` is that free part: what can be spent, held or expire. (`remaining
# > 0` stays in the condition so the planner can use the partial index ix_lots_spendable.)
_ACTIVE_LOTS = text(
    "SELECT l.id, l.user_id, l.asset, l.remaining - l.held AS remaining, l.expires_at, "
    "l.created_at FROM lots l "
    "JOIN unnest(CAST(:users AS text[]), CAST(:assets AS text[])) AS a(user_id, asset) "
    "ON l.user_id = a.user_id AND l.asset = a.asset "
    "WHERE l.status = 'active' AND l.remaining > 0 AND l.remaining > l.held ORDER BY l.id FOR UPDATE OF l"
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
    return {(u, a): Totals(r.balance, r.pending, r.debt, r.held) for (u, a), r in rows.items()}


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
            accounts.c.held,
        )
        .where(tuple_(accounts.c.user_id, accounts.c.asset).in_(wanted))
        .order_by(accounts.c.user_id, accounts.c.asset)
        .with_for_update(skip_locked=skip_locked)
    )
    return {(r.user_id, r.asset): Totals(r.balance, r.pending, r.debt, r.held) for r in rows}


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
                    "held": t.held,
                }
                for (u, a), t in totals.items()
            ),
        )


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


async def entry_by_key(session: AsyncSession, key: str, asset: str) -> JournalEntry | None:
    result = await session.execute(
        select(journal_entries).where(
            journal_entries.c.idempotency_key == key, journal_entries.c.asset == asset
        )
    )
    row = result.one_or_none()
    return None if row is None else row_as(JournalEntry, row)


async def active_lots(
    session: AsyncSession, keys: Sequence[Account], now: datetime
) -> tuple[dict[Account, list[SpendableLot]], list[DueLot]]:
    """Every active lot of these accounts with points no hold reserves, locked (the caller
    holds the accounts' locks): the ones they can spend now, by account, and the ones past
    due, in the order `due_lots` gives them; `remaining` is the unreserved part."""
    spendable: dict[Account, list[SpendableLot]] = {k: [] for k in keys}
    if not keys:
        return spendable, []
    due: list[DueLot] = []
    for r in await session.execute(_ACTIVE_LOTS, _pairs(keys)):
        if r.expires_at is not None and r.expires_at <= now:
            due.append(row_as(DueLot, r))
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


async def due_lots(session: AsyncSession, keys: Sequence[Account], now: datetime) -> list[DueLot]:
    """Active lots whose expiry has passed with points no hold reserves (`remaining`: that
    part, the part that expires); the caller holds the account locks."""
    if not keys:
        return []
    rows = await session.execute(
        select(
            lots.c.id,
            lots.c.user_id,
            lots.c.asset,
            (lots.c.remaining - lots.c.held).label("remaining"),
            lots.c.expires_at,
            lots.c.created_at,
        )
        .where(
            tuple_(lots.c.user_id, lots.c.asset).in_(sorted(set(keys))),
            lots.c.status == inline("active"),
            lots.c.remaining > inline(0),  # the partial index's condition
            lots.c.remaining > lots.c.held,
            lots.c.expires_at <= now,
        )
        .order_by(lots.c.user_id, lots.c.asset, lots.c.expires_at, lots.c.id)
        .with_for_update()
    )
    return [row_as(DueLot, r) for r in rows]


async def close_expired_lots(session: AsyncSession, lot_ids: Sequence[str]) -> None:
    """Expire what no hold reserves of these past-due lots; a lot an open hold still reserves
    points of stays active with them (they expire when the hold lets them go)."""
    if lot_ids:
        await session.execute(
            update(lots)
            .where(lots.c.id.in_(list(lot_ids)))
            .values(
                remaining=lots.c.held,
                status=case((lots.c.held == 0, inline("expired")), else_=lots.c.status),
            )
        )
