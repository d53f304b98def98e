"""Holds (积分抵现 at checkout): points reserved when the user confirms an order, captured when
the payment succeeds (a debit, in whole or in part, the rest released), voided when the order
is cancelled, or at the hold's deadline by the sweeper (sweeps.py).

A hold reserves points of the earliest-expiring lots; they stay in the balance (and in their
lots) but are not available: debits, extension fees, clawbacks and debt repayment take only
what no hold reserves. The rule for lots that expire while held: held points do not expire
while the hold is open (the expiry sweep takes only the rest of the lot); a capture still
takes them; points a hold lets go of after their lot's expiry expire at once (an `expire`
entry keyed by the lot and the capture's or void's journal key).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger import repository as repo
from services.rewards_ledger.domain import (
    Account,
    DebitVoided,
    HoldCommand,
    IdempotencyKeyReused,
    InsufficientPoints,
    Settlement,
    Totals,
    allocate,
    debit_journal_key,
    hold_void_journal_key,
    placement_reuse,
    released_expiry_journal_key,
    settle,
    settle_step,
)
from services.rewards_ledger.repository.rows import HoldRow
from services.rewards_ledger.service.accounts import (
    append,
    entry_row,
    expire_due_lots,
    expire_lots,
    repay_debts,
)
from services.rewards_ledger.service.assets import require_spendable
from shared.errors import NotFound

# --- views -------------------------------------------------------------------------------------


def _closing_key(hold: HoldRow) -> str | None:
    """The journal key of the entry that closed the hold (its capture's debit, or its void)."""
    if hold.status == "captured" and hold.settle_key is not None:
        return debit_journal_key(hold.settle_key)
    if hold.status == "voided":
        return hold_void_journal_key(hold.id)
    return None


async def _views(session: AsyncSession, holds: Sequence[HoldRow]) -> list[dict[str, Any]]:
    """Holds as the API shows them, with the lots each reserved and how many of the points it
    released expired at once."""
    lots = await repo.lots_of_holds(session, [h.id for h in holds])
    expired: dict[str, int] = {}
    for asset in {h.asset for h in holds}:
        keys = {
            released_expiry_journal_key(lot["lot_id"], closing): h.id
            for h in holds
            if h.asset == asset and (closing := _closing_key(h)) is not None
            for lot in lots.get(h.id, [])
        }
        for e in await repo.entries_by_keys(session, list(keys), asset):
            expired[keys[e.idempotency_key]] = expired.get(keys[e.idempotency_key], 0) - e.amount
    return [
        {
            "id": h.id,
            "user_id": h.user_id,
            "asset": h.asset,
            "points": h.points,
            "status": h.status,
            "captured": h.captured,
            "released": 0 if h.status == "open" else h.points - h.captured,
            "expired_points": expired.get(h.id, 0),
            "idempotency_key": h.idempotency_key,
            "reference": h.reference,
            "expires_at": h.expires_at,
            "created_at": h.created_at,
            "closed_at": h.closed_at,
            "closed_by": h.closed_by,
            "entry_id": h.entry_id,
            "settle_entry_id": h.settle_entry_id,
            "lots": lots.get(h.id, []),
        }
        for h in holds
    ]


async def hold_view(session: AsyncSession, hold_id: str) -> dict[str, Any]:
    hold = await repo.hold_of(session, hold_id)
    if hold is None:
        raise NotFound("hold", hold_id)
    return (await _views(session, [hold]))[0]


async def holds_of_user(
    session: AsyncSession, user_id: str, asset: str, status: str | None, limit: int
) -> dict[str, Any]:
    """A user's holds of one asset, newest first."""
    return {
        "items": await _views(session, await repo.holds_of(session, user_id, asset, status, limit))
    }


# --- placing -----------------------------------------------------------------------------------


async def place_hold(
    session: AsyncSession, command: HoldCommand, now: datetime | None = None
) -> tuple[dict[str, Any], bool]:
    """Reserve points of the earliest-expiring lots until `command.expires_at`. Refused with
    insufficient_points when less is available. Same key, same hold (created False); the
    same key with another user or number of points is refused (idempotency_key_reused)."""
    now = now or datetime.now(UTC)
    await require_spendable(session, command.asset)
    account = command.account
    totals = await repo.lock_accounts(session, [account], create=False)
    existing = await repo.hold_of(session, command.hold_id)
    if existing is not None:
        if (refusal := placement_reuse(existing, command)) is not None:
            raise refusal
        return (await _views(session, [existing]))[0], False
    if account not in totals:
        raise InsufficientPoints(0, command.points)
    lots, due = await repo.active_lots(session, [account], now)
    await expire_lots(session, totals, due)
    t = totals[account]
    if t.available < command.points:
        raise InsufficientPoints(t.available, command.points)
    taken = allocate(lots[account], command.points)
    t.held += command.points
    entry = entry_row(
        account,
        "hold",
        command.journal_key,
        t,
        held=command.points,
        reference=command.reference,
        reason=f"held until {command.expires_at.isoformat()}",
    )
    entry["hold_id"] = command.hold_id
    [written] = await append(session, [entry])
    hold = await repo.insert_hold(
        session,
        {
            "id": command.hold_id,
            "user_id": command.user_id,
            "asset": command.asset,
            "points": command.points,
            "idempotency_key": command.idempotency_key,
            "reference": command.reference,
            "expires_at": command.expires_at,
            "entry_id": written["id"],
        },
        taken,
    )
    await repo.set_totals(session, totals)
    return (await _views(session, [hold]))[0], True


# --- closing -----------------------------------------------------------------------------------


async def capture_hold(
    session: AsyncSession,
    hold_id: str,
    points: int | None,
    key: str,
    now: datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """Take `points` of the hold (all of it when None) as a debit journaled under the caller's
    `key` (a refund of that key gives them back), releasing the rest. Returns (hold, created)."""
    return await _settle(session, hold_id, "capture", key, points, now)


async def void_hold(
    session: AsyncSession, hold_id: str, key: str, now: datetime | None = None
) -> tuple[dict[str, Any], bool]:
    """Release the whole hold. Returns (hold, created)."""
    return await _settle(session, hold_id, "void", key, None, now)


async def _settle(
    session: AsyncSession,
    hold_id: str,
    action: Settlement,
    key: str,
    points: int | None,
    now: datetime | None,
) -> tuple[dict[str, Any], bool]:
    now = now or datetime.now(UTC)
    found = await repo.hold_of(session, hold_id)
    if found is None:
        raise NotFound("hold", hold_id)
    totals = await repo.lock_accounts(session, [(found.user_id, found.asset)], create=False)
    hold = await repo.hold_of(session, hold_id, lock=True)
    assert hold is not None  # holds are never deleted
    wanted = (hold.points if points is None else points) if action == "capture" else 0
    other = await repo.hold_settled_with(session, key, hold.asset)
    if other is not None and other.id != hold.id:
        raise IdempotencyKeyReused(key, f"{other.closed_by} of another hold")
    if settle_step(hold, action, key, wanted, now) == "replay":
        return (await _views(session, [hold]))[0], False
    if action == "capture":
        used, voided = await repo.used_keys(session, [(debit_journal_key(key), hold.asset)])
        if used:
            raise IdempotencyKeyReused(key, "debit")
        if voided:
            raise DebitVoided(key)
    await expire_due_lots(session, totals, now)
    await close(session, totals, hold, wanted, key, action, now)
    await repo.set_totals(session, totals)
    closed = await repo.hold_of(session, hold_id)
    assert closed is not None
    return (await _views(session, [closed]))[0], True


async def close(
    session: AsyncSession,
    totals: dict[Account, Totals],
    hold: HoldRow,
    captured: int,
    settle_key: str | None,
    closed_by: str,
    now: datetime,
) -> None:
    """Close an open hold: capture `captured` points (0: void), release the rest. The caller
    holds the account's lock (and writes `totals`) and has expired its past-due lots."""
    account = (hold.user_id, hold.asset)
    held = await repo.held_lots(session, hold.id)
    expiry = {lot.id: lot.expires_at for lot in held}
    earned = {lot.id: lot.created_at for lot in held}
    plan = settle(held, captured, expiry, now)
    closing = (
        debit_journal_key(settle_key)
        if captured and settle_key is not None
        else hold_void_journal_key(hold.id)
    )
    await repo.settle_lots(session, plan.lot_moves, now)
    t = totals[account]
    t.held -= hold.points
    t.balance -= captured

    def draws(taken: list[tuple[str, int]]) -> list[dict[str, Any]]:
        return [
            {"lot_id": lot, "points": pts, "earned_at": earned[lot], "expires_at": expiry[lot]}
            for lot, pts in taken
        ]

    if captured:
        entry = entry_row(
            account,
            "debit",
            closing,
            t,
            -captured,
            held=-hold.points,
            reference=hold.reference,
            reason=f"hold {hold.id} captured ({captured} of {hold.points})",
        )
        entry["lots"] = draws(plan.captured)
    else:
        entry = entry_row(
            account,
            "hold_void",
            closing,
            t,
            held=-hold.points,
            reference=hold.reference,
            reason=f"hold {hold.id} released ({'deadline' if closed_by == 'deadline' else 'void'})",
        )
    entry["hold_id"] = hold.id
    rows = [entry]
    for lot_id, pts in plan.released.expiring:
        t.balance -= pts
        row = entry_row(
            account,
            "expire",
            released_expiry_journal_key(lot_id, closing),
            t,
            -pts,
            lot_id=lot_id,
            reason="held points released after their lot expired",
        )
        row["lots"] = draws([(lot_id, pts)])
        rows.append(row)
    written = await append(session, rows)
    await repo.insert_allocations(
        session, [(written[0]["id"], lot, pts) for lot, pts in plan.captured]
    )
    await repo.close_hold(
        session,
        hold.id,
        status="captured" if captured else "voided",
        captured=captured,
        settle_key=settle_key,
        closed_by=closed_by,
        settle_entry_id=written[0]["id"],
        closed_at=now,
    )
    if plan.released.to_lots:  # points available again: a debt is repaid from them first
        await repay_debts(session, totals, {account: closing}, now)
