"""The sweeps: past-due lots expired, pending lots released once their time has come, and
holds voided at their deadline."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger import repository as repo
from services.rewards_ledger.domain import release_journal_key
from services.rewards_ledger.service.accounts import append, entry_row, expire_due_lots, repay_debts
from services.rewards_ledger.service.holds import close


async def sweep_expired(session: AsyncSession, now: datetime, max_accounts: int) -> int:
    """One batch of the expiry sweep. Replicas skip accounts another replica holds."""
    keys = await repo.accounts_with_due_lots(session, now, max_accounts)
    if not keys:
        return 0
    totals = await repo.lock_existing_accounts(session, keys, skip_locked=True)
    expired = await expire_due_lots(session, totals, now)
    await repo.set_totals(session, totals)
    return len(expired)


async def sweep_released(session: AsyncSession, now: datetime, max_accounts: int) -> int:
    """One batch of the release sweep: pending lots whose available_at has come become
    spendable, each exactly once (status and journal key). Replicas skip accounts another
    replica holds. Returns how many lots were released."""
    keys = await repo.accounts_with_releasable_lots(session, now, max_accounts)
    if not keys:
        return 0
    totals = await repo.lock_existing_accounts(session, keys, skip_locked=True)
    due = await repo.releasable_lots(session, list(totals), now)
    rows, triggers = [], {}
    for lot in due:
        account = (lot.user_id, lot.asset)
        t = totals[account]
        t.pending -= lot.remaining
        t.balance += lot.remaining
        key = release_journal_key(lot.id)
        triggers[account] = key
        rows.append(
            entry_row(
                account,
                "release",
                key,
                t,
                lot.remaining,
                pending=-lot.remaining,
                lot_id=lot.id,
                reason=f"pending points available from {lot.available_at.isoformat()}",
            )
        )
    await repo.activate_lots(session, [lot.id for lot in due])
    await append(session, rows)
    await repay_debts(session, totals, triggers, now)
    await repo.set_totals(session, totals)
    return len(due)


async def sweep_expired_holds(session: AsyncSession, now: datetime, max_accounts: int) -> int:
    """One batch of the hold sweep: every open hold past its deadline is voided (released;
    what its lots lost to expiry meanwhile expires at once), each exactly once (its status
    moves once, under the account's lock). Replicas skip accounts another replica holds.
    Returns how many holds were voided."""
    keys = await repo.accounts_with_due_holds(session, now, max_accounts)
    if not keys:
        return 0
    totals = await repo.lock_existing_accounts(session, keys, skip_locked=True)
    due = await repo.due_holds(session, list(totals), now)
    if not due:
        return 0
    await expire_due_lots(session, totals, now)
    for hold in due:
        await close(session, totals, hold, 0, None, "deadline", now)
    await repo.set_totals(session, totals)
    return len(due)
