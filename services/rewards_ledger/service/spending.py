"""Spending: debits, one or a batch in one unit of work, earliest-expiring lots first."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger import repository as repo
from services.rewards_ledger.domain import (
    DEFAULT_ASSET,
    Account,
    DebitCommand,
    DebitVerdict,
    NewDebit,
    ReplayInBatch,
    ReplayStored,
    SpendableLot,
    Totals,
    plan_debits,
    total_taken,
)
from services.rewards_ledger.repository.rows import DueLot, JournalEntry
from services.rewards_ledger.service.accounts import append, entry_row, expire_lots, key_use
from services.rewards_ledger.service.assets import spending_refusals
from shared.errors import DomainError

DebitOutcome = tuple[dict[str, Any], bool] | DomainError
# A debit of the batch to write: (its index in the batch, the command, what plan_debits said).
_NewDebitAt = tuple[int, DebitCommand, NewDebit]


def _allocation_view(
    taken: list[tuple[str, int]], expiry: dict[str, datetime | None]
) -> list[dict[str, Any]]:
    """A debit's allocations as the API shows them: earliest expiry first, never-expiring last."""
    rows = [{"lot_id": lot, "points": pts, "expires_at": expiry[lot]} for lot, pts in taken]
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(
        rows, key=lambda a: (a["expires_at"] is None, a["expires_at"] or far, a["lot_id"])
    )


def _debit_view(e: Mapping[str, Any], allocations: list[dict[str, Any]]) -> dict[str, Any]:
    """A debit as the API shows it, from its journal entry (as written, or stored)."""
    return {
        "entry_id": e["id"],
        "user_id": e["user_id"],
        "asset": e["asset"],
        "points": -e["amount"],
        "balance_after": e["balance_after"],
        "idempotency_key": e["idempotency_key"],
        "reference": e["reference"],
        "created_at": e["created_at"],
        "allocations": allocations,
    }


@dataclass
class _Books:
    """What a batch of debits reads under its account locks."""

    existing: dict[tuple[str, str], JournalEntry]  # (journal key, asset) -> the entry using it
    voided: set[tuple[str, str]]  # (journal key, asset) pairs a refund voided
    spending: dict[Account, Totals]  # the accounts with a debit to judge, locked
    lots: dict[Account, list[SpendableLot]]  # their spendable lots
    due: list[DueLot]  # their lots that were past due, expired now

    def lot_dates(self) -> tuple[dict[str, datetime | None], dict[str, datetime]]:
        """lot id -> its expiry, and lot id -> when it was earned, for the spendable lots."""
        every = [lot for account_lots in self.lots.values() for lot in account_lots]
        return {lot.id: lot.expires_at for lot in every}, {lot.id: lot.created_at for lot in every}


async def debit_many(
    session: AsyncSession, commands: list[DebitCommand], now: datetime | None = None
) -> list[DebitOutcome]:
    """Spend points for many debits in one unit of work, earliest-expiring lots first.

    Each command gets its own outcome, in order: (result, created), or the DomainError that a
    single debit would have raised (a refusal changes nothing, and does not stop the others).
    The work is set-based: one lock of all the accounts (in key order), one lookup of the
    keys already used or voided, one read of the lots, then one write per table. Debits of
    different assets are judged apart: their accounts and keys are separate.
    """
    now = now or datetime.now(UTC)
    refusals = await spending_refusals(session, (c.asset for c in commands))
    verdicts: list[DebitVerdict | None] = [refusals.get(c.asset) for c in commands]
    live = [i for i, v in enumerate(verdicts) if v is None]
    books = await _lock_books(session, [commands[i] for i in live], now)
    _judge(commands, live, books, verdicts)
    outcomes: list[DebitOutcome | None] = [
        v if isinstance(v, DomainError) else None for v in verdicts
    ]
    new = [
        (i, c, v)
        for i, (c, v) in enumerate(zip(commands, verdicts, strict=True))
        if isinstance(v, NewDebit)
    ]
    if new:
        await _write_debits(session, new, books, outcomes)
    if new or books.due:
        await repo.set_totals(session, books.spending)
    await _answer_replays(session, commands, verdicts, books, outcomes)
    return [o for o in outcomes if o is not None]


async def _lock_books(session: AsyncSession, commands: list[DebitCommand], now: datetime) -> _Books:
    """Lock the accounts of these debits (in key order), read the keys they use and the lots
    they could spend, and expire the lots past due."""
    totals = await repo.lock_accounts(session, (c.account for c in commands), create=False)
    # Under the account locks: a concurrent request with the same key has either committed
    # (and is a replay here) or has not started its debit.
    existing, voided = await repo.used_keys(session, [(c.journal_key, c.asset) for c in commands])
    spending = {
        c.account: totals[c.account]
        for c in commands
        if (c.journal_key, c.asset) not in existing and c.account in totals
    }
    lots, due = await repo.active_lots(session, sorted(spending), now)
    await expire_lots(session, spending, due)
    return _Books(existing, voided, spending, lots, due)


def _judge(
    commands: list[DebitCommand],
    live: list[int],
    books: _Books,
    verdicts: list[DebitVerdict | None],
) -> None:
    """Fill in the verdicts of the live commands, asset by asset (their accounts and keys are
    separate); a replay in the batch points at its original's index in the whole batch."""
    by_asset: dict[str, list[int]] = {}
    for i in live:
        by_asset.setdefault(commands[i].asset, []).append(i)
    for asset, indexes in by_asset.items():
        planned = plan_debits(
            [commands[i] for i in indexes],
            {k: key_use(e) for (k, a), e in books.existing.items() if a == asset},
            {k for k, a in books.voided if a == asset},
            # what open holds reserve is not spendable
            {u: t.available for (u, a), t in books.spending.items() if a == asset},
            {u: account_lots for (u, a), account_lots in books.lots.items() if a == asset},
        )
        for i, verdict in zip(indexes, planned, strict=True):
            verdicts[i] = (
                ReplayInBatch(indexes[verdict.index])
                if isinstance(verdict, ReplayInBatch)
                else verdict
            )


async def _write_debits(
    session: AsyncSession,
    new: list[_NewDebitAt],
    books: _Books,
    outcomes: list[DebitOutcome | None],
) -> None:
    """Take the new debits' points off their lots, journal them with the lots they drew on
    (for ledger.events), record their allocations, and answer them (created)."""
    expiry, earned = books.lot_dates()
    await repo.take_from_lots(session, total_taken(v.taken for _, _, v in new))
    rows = []
    for _, c, v in new:
        t = books.spending[c.account]
        t.balance -= c.points  # v.balance_after is what is available after it
        entry = entry_row(
            c.account,
            "debit",
            c.journal_key,
            t,
            -c.points,
            reference=c.reference,
            reason=c.reason,
        )
        entry["lots"] = [
            {"lot_id": lot, "points": pts, "earned_at": earned[lot], "expires_at": expiry[lot]}
            for lot, pts in v.taken
        ]
        rows.append(entry)
    written = await append(session, rows)
    await repo.insert_allocations(
        session,
        [
            (e["id"], lot, pts)
            for e, (_, _, v) in zip(written, new, strict=True)
            for lot, pts in v.taken
        ],
    )
    for e, (i, _, v) in zip(written, new, strict=True):
        outcomes[i] = (_debit_view(e, _allocation_view(v.taken, expiry)), True)


async def _answer_replays(
    session: AsyncSession,
    commands: list[DebitCommand],
    verdicts: list[DebitVerdict | None],
    books: _Books,
    outcomes: list[DebitOutcome | None],
) -> None:
    """Answer the replays (not created): a debit from before as stored, with its allocations;
    a repeat within the batch as its original was answered."""
    replayed = {
        books.existing[(c.journal_key, c.asset)].id: None
        for c, v in zip(commands, verdicts, strict=True)
        if isinstance(v, ReplayStored)
    }
    allocs = await repo.allocations_of(session, list(replayed)) if replayed else {}
    for i, (c, verdict) in enumerate(zip(commands, verdicts, strict=True)):
        if isinstance(verdict, ReplayStored):
            done = books.existing[(c.journal_key, c.asset)]
            outcomes[i] = (_debit_view(asdict(done), allocs.get(done.id, [])), False)
        elif isinstance(verdict, ReplayInBatch):
            original = outcomes[verdict.index]
            assert isinstance(original, tuple)
            outcomes[i] = (original[0], False)


async def debit(
    session: AsyncSession,
    user_id: str,
    points: int,
    idempotency_key: str,
    reason: str,
    reference: str | None,
    now: datetime | None = None,
    asset: str = DEFAULT_ASSET,
) -> tuple[dict[str, Any], bool]:
    """Spend points, earliest-expiring lots first. Returns (result, created)."""
    command = DebitCommand(user_id, points, idempotency_key, reason, reference, asset)
    [outcome] = await debit_many(session, [command], now)
    if isinstance(outcome, DomainError):
        raise outcome
    return outcome
