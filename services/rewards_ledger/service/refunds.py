"""Refunds: a debit undone into the lots it came from, or its key voided when it never came."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger import repository as repo
from services.rewards_ledger.domain import (
    DEFAULT_ASSET,
    Account,
    Totals,
    debit_journal_key,
    refund_expiry_journal_key,
    refund_journal_key,
    refund_step,
    restore,
)
from services.rewards_ledger.repository.rows import DebitVoid, JournalEntry
from services.rewards_ledger.service.accounts import append, entry_row, expire_due_lots, repay_debts
from services.rewards_ledger.service.assets import require_spendable


def _owner(row: JournalEntry | DebitVoid | None) -> str | None:
    return None if row is None else row.user_id


def _void_result(void: DebitVoid, balance: int, debit_key: str) -> dict[str, Any]:
    return {
        "status": "voided",
        "user_id": void.user_id,
        "asset": void.asset,
        "debit_idempotency_key": debit_key,
        "entry_id": None,
        "points": 0,
        "expired_points": 0,
        "balance_after": balance,
        "created_at": void.created_at,
        "allocations": [],
    }


async def _refund_result(
    session: AsyncSession, entry: JournalEntry, debit_key: str, balance: int
) -> dict[str, Any]:
    allocs = (await repo.allocations_of(session, [entry.id])).get(entry.id, [])
    expiry_keys = [refund_expiry_journal_key(a["lot_id"], entry.idempotency_key) for a in allocs]
    lapsed = {e.lot_id for e in await repo.entries_by_keys(session, expiry_keys, entry.asset)}
    return {
        "status": "refunded",
        "user_id": entry.user_id,
        "asset": entry.asset,
        "debit_idempotency_key": debit_key,
        "entry_id": entry.id,
        "points": entry.amount,
        "expired_points": sum(a["points"] for a in allocs if a["lot_id"] in lapsed),
        "balance_after": balance,
        "created_at": entry.created_at,
        "allocations": [{**a, "expired": a["lot_id"] in lapsed} for a in allocs],
    }


async def refund(
    session: AsyncSession,
    user_id: str,
    debit_key: str,
    reason: str,
    reference: str | None = None,
    now: datetime | None = None,
    asset: str = DEFAULT_ASSET,
) -> tuple[dict[str, Any], bool]:
    """Undo a debit: every point goes back to the lot it came from, with that lot's expiry.

    Points whose lot has expired in the meantime are refunded and expire at once (a refund
    never extends a lot's life). A refund for a debit that never arrived voids its key, so
    the debit is refused if it shows up later. Idempotent per debit. An account in debt
    repays it from the refunded points. Returns (result, created).
    """
    now = now or datetime.now(UTC)
    await require_spendable(session, asset)
    account = (user_id, asset)
    dkey, rkey = debit_journal_key(debit_key), refund_journal_key(debit_key)
    totals = await repo.lock_accounts(session, [account])
    # Looked up in this order, each only while the ones before found nothing.
    done = await repo.entry_by_key(session, rkey, asset)
    void = None if done is not None else await repo.void_of(session, dkey, asset)
    debit_entry = (
        None
        if done is not None or void is not None
        else await repo.entry_by_key(session, dkey, asset)
    )
    step = refund_step(user_id, debit_key, _owner(done), _owner(void), _owner(debit_entry))
    t = totals[account]
    if step == "replay_refund":
        assert done is not None
        return await _refund_result(session, done, debit_key, t.balance), False
    if step == "replay_void":
        assert void is not None
        return _void_result(void, t.balance, debit_key), False
    if step == "void":
        void = await repo.insert_void(session, dkey, asset, user_id, reason)
        return _void_result(void, t.balance, debit_key), True
    assert debit_entry is not None  # step == "refund"
    await _refund_debit(session, totals, account, debit_entry, rkey, reason, reference, now)
    stored = await repo.entry_by_key(session, rkey, asset)
    assert stored is not None  # written just now
    return await _refund_result(session, stored, debit_key, t.balance), True


async def _refund_debit(
    session: AsyncSession,
    totals: dict[Account, Totals],
    account: Account,
    debit_entry: JournalEntry,
    rkey: str,
    reason: str,
    reference: str | None,
    now: datetime,
) -> None:
    """Give a debit's points back to its lots (the account is locked): journal the refund and
    the expiry of what went back to lots that lapsed since, then repay any debt."""
    await expire_due_lots(session, totals, now)
    taken = [
        (a["lot_id"], a["points"])
        for a in (await repo.allocations_of(session, [debit_entry.id])).get(debit_entry.id, [])
    ]
    expiries = await repo.lock_lots(session, [lot_id for lot_id, _ in taken])
    restoration = restore(taken, {lot_id: expiries[lot_id] for lot_id, _ in taken}, now)
    await repo.give_back_to_lots(session, restoration.to_lots)
    await repo.mark_lots_expired(session, restoration.lapsed_lots)
    t = totals[account]
    t.balance -= debit_entry.amount
    rows = [
        entry_row(
            account,
            "refund",
            rkey,
            t,
            -debit_entry.amount,
            reference=reference or debit_entry.reference,
            reason=reason,
        )
    ]
    for lot_id, pts in restoration.expiring:
        t.balance -= pts
        rows.append(
            entry_row(
                account,
                "expire",
                refund_expiry_journal_key(lot_id, rkey),
                t,
                -pts,
                lot_id=lot_id,
                reason="refunded points whose lot had already expired",
            )
        )
    written = await append(session, rows)
    await repo.insert_allocations(session, [(written[0]["id"], lot, pts) for lot, pts in taken])
    await repay_debts(session, totals, {account: rkey}, now)
    await repo.set_totals(session, totals)
