"""The floor under every ledger use case: journal rows and their ledger.events, lot expiry,
debt repayment and key replay, on accounts the caller has locked."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger import repository as repo
from services.rewards_ledger.domain import (
    Account,
    KeyUse,
    Totals,
    allocate,
    expiry_journal_key,
    key_reuse,
    repay_journal_key,
    total_taken,
)
from services.rewards_ledger.metrics import POINTS_MOVED
from services.rewards_ledger.models import messaging
from services.rewards_ledger.repository.rows import DueLot, JournalEntry
from shared.events import LEDGER_EVENTS, LedgerEvent, LedgerEventType
from shared.messaging import OutgoingEvent, add_to_outbox

# A journal entry's kind -> the type of the ledger event it publishes.
EVENT_TYPE: dict[str, LedgerEventType] = {
    "credit": "credited",
    "debit": "debited",
    "expire": "expired",
    "adjustment": "adjusted",
    "refund": "refunded",
    "pending": "pending",
    "release": "released",
    "clawback": "clawed_back",
    "debt_repaid": "debt_repaid",
    "extension": "extended",
    "hold": "hold_placed",
    "hold_void": "hold_voided",
}


def entry_row(
    account: Account,
    kind: str,
    key: str,
    totals: Totals,
    amount: int = 0,
    *,
    pending: int = 0,
    debt: int = 0,
    held: int = 0,
    lot_id: str | None = None,
    reference: str | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """A journal row; `totals` must already include this movement (balance_after)."""
    return {
        "user_id": account[0],
        "asset": account[1],
        "kind": kind,
        "amount": amount,
        "balance_after": totals.balance,
        "pending_delta": pending,
        "debt_delta": debt,
        "held_delta": held,
        "idempotency_key": key,
        "lot_id": lot_id,
        "reference": reference,
        "reason": reason,
    }


def _ledger_event(entry: dict[str, Any]) -> OutgoingEvent:
    event = LedgerEvent(
        type=EVENT_TYPE[entry["kind"]],
        entry_id=entry["id"],
        user_id=entry["user_id"],
        asset=entry["asset"],
        points=entry["amount"],
        pending=entry["pending_delta"],
        debt=entry["debt_delta"],
        held=entry["held_delta"],
        balance_after=entry["balance_after"],
        idempotency_key=entry["idempotency_key"],
        occurred_at=entry["created_at"],
        reference=entry.get("reference"),
        lots=entry.get("lots"),  # the lots a debit or an expiry took from (insights' cycle)
        hold_id=entry.get("hold_id"),  # a hold placed, voided, or captured (a debit)
    )
    return OutgoingEvent(LEDGER_EVENTS, entry["user_id"], event.model_dump_json())


async def append(session: AsyncSession, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write journal entries and their ledger.events in one go."""
    written = await repo.insert_entries(session, entries)
    await add_to_outbox(session, messaging.outbox, [_ledger_event(e) for e in written])
    for e in written:
        # a hold or its void moves only held points; a capture counts what it debited
        moved = abs(e["amount"]) + abs(e["pending_delta"]) or abs(e["held_delta"])
        POINTS_MOVED.labels(e["kind"]).inc(moved)
    return written


# --- lot expiry --------------------------------------------------------------------------------


async def expire_due_lots(
    session: AsyncSession, totals: dict[Account, Totals], now: datetime
) -> list[dict[str, Any]]:
    """Expire the past-due lots of accounts the caller has locked; updates `totals` in place."""
    return await expire_lots(session, totals, await repo.due_lots(session, list(totals), now))


async def expire_lots(
    session: AsyncSession, totals: dict[Account, Totals], due: list[DueLot]
) -> list[dict[str, Any]]:
    """Expire these past-due lots (locked, of accounts the caller has locked); updates
    `totals` in place (the caller writes them)."""
    if not due:
        return []
    entry_rows = []
    for lot in due:
        account = (lot.user_id, lot.asset)
        t = totals[account]
        t.balance -= lot.remaining
        entry = entry_row(
            account,
            "expire",
            expiry_journal_key(lot.id),
            t,
            -lot.remaining,
            lot_id=lot.id,
            reason=f"points expired at {lot.expires_at.isoformat()}",
        )
        entry["lots"] = [
            {
                "lot_id": lot.id,
                "points": lot.remaining,
                "earned_at": lot.created_at,
                "expires_at": lot.expires_at,
            }
        ]
        entry_rows.append(entry)
    await repo.close_expired_lots(session, [lot.id for lot in due])
    return await append(session, entry_rows)


# --- debt repayment ----------------------------------------------------------------------------


async def repay_debts(
    session: AsyncSession,
    totals: dict[Account, Totals],
    triggers: dict[Account, str],
    now: datetime,
) -> None:
    """Accounts (locked) that just gained available points repay their debt from them first,
    earliest-expiring lots first. `triggers`: account -> the journal key that gained them."""
    owing = sorted(a for a in triggers if totals[a].debt > 0 and totals[a].available > 0)
    if not owing:
        return
    lots, due = await repo.active_lots(session, owing, now)
    await expire_lots(session, totals, due)
    rows, takings = [], []
    for account in owing:
        t = totals[account]
        amount = min(t.debt, t.available)
        if amount <= 0:
            continue
        takings.append(allocate(lots[account], amount))
        t.balance -= amount
        t.debt -= amount
        rows.append(
            entry_row(
                account,
                "debt_repaid",
                repay_journal_key(triggers[account]),
                t,
                -amount,
                debt=-amount,
                reason="debt from clawed-back points repaid first",
            )
        )
    await repo.take_from_lots(session, total_taken(takings))
    written = await append(session, rows)
    await repo.insert_allocations(
        session,
        [
            (e["id"], lot, pts)
            for e, taken in zip(written, takings, strict=True)
            for lot, pts in taken
        ],
    )


# --- key replay --------------------------------------------------------------------------------


def key_use(entry: JournalEntry) -> KeyUse:
    """What a journal entry used its idempotency key for."""
    return KeyUse(entry.kind, entry.user_id, abs(entry.amount))


async def replay(
    session: AsyncSession, key: str, asset: str, user_id: str, points: int, kind: str
) -> JournalEntry | None:
    """The entry already written under `key`, if any; refused when it was for another use."""
    existing = await repo.entry_by_key(session, key, asset)
    if existing is None:
        return None
    if (refusal := key_reuse(key, key_use(existing), KeyUse(kind, user_id, points))) is not None:
        raise refusal
    return existing
