"""Ledger use cases. They run inside the caller's unit of work and only flush."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger import repository as repo
from services.rewards_ledger.domain import (
    DebitCommand,
    KeyUse,
    NewDebit,
    ReplayInBatch,
    ReplayStored,
    debit_journal_key,
    expiry_for,
    expiry_journal_key,
    expiry_moves,
    key_reuse,
    plan_debits,
    refund_expiry_journal_key,
    refund_journal_key,
    refund_moves,
    refund_step,
    restore,
    running_balances,
    total_taken,
)

# Re-exported: callers catch service.InsufficientPoints.
from services.rewards_ledger.domain import InsufficientPoints as InsufficientPoints
from services.rewards_ledger.models import messaging
from shared.errors import DomainError
from shared.events import LEDGER_EVENTS, GrantCommand, LedgerEvent, stable_id
from shared.messaging import OutgoingEvent, add_to_outbox
from shared.metrics import POINTS_MOVED

EVENT_TYPE = {
    "credit": "credited",
    "debit": "debited",
    "expire": "expired",
    "adjustment": "adjusted",
    "refund": "refunded",
}


@dataclass(frozen=True)
class NewCredit:
    user_id: str
    points: int
    idempotency_key: str
    origin: str  # grant | adjustment
    origin_ref: str
    expires_at: datetime | None
    reason: str = ""
    reference: str | None = None


def _ledger_event(entry: dict[str, Any]) -> OutgoingEvent:
    event = LedgerEvent(
        type=EVENT_TYPE[entry["kind"]],  # type: ignore[arg-type]
        entry_id=entry["id"],
        user_id=entry["user_id"],
        points=entry["amount"],
        balance_after=entry["balance_after"],
        idempotency_key=entry["idempotency_key"],
        occurred_at=entry["created_at"],
        reference=entry.get("reference"),
    )
    return OutgoingEvent(LEDGER_EVENTS, entry["user_id"], event.model_dump_json())


async def _append(session: AsyncSession, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write journal entries and their ledger.events in one go."""
    written = await repo.insert_entries(session, entries)
    await add_to_outbox(session, messaging.outbox, [_ledger_event(e) for e in written])
    for e in written:
        POINTS_MOVED.labels(e["kind"]).inc(abs(e["amount"]))
    return written


async def credit(session: AsyncSession, credits: list[NewCredit]) -> list[dict[str, Any]]:
    """Credit many lots at once (one batch of grants): one lock round trip, set-based writes."""
    if not credits:
        return []
    balances = await repo.lock_accounts(session, (c.user_id for c in credits))
    after, final = running_balances(balances, [(c.user_id, c.points) for c in credits])
    lot_rows, entry_rows = [], []
    for c, balance_after in zip(credits, after, strict=True):
        lot_id = stable_id("lot", c.idempotency_key)
        lot_rows.append(
            {
                "id": lot_id,
                "user_id": c.user_id,
                "origin": c.origin,
                "origin_ref": c.origin_ref,
                "points": c.points,
                "remaining": c.points,
                "expires_at": c.expires_at,
            }
        )
        entry_rows.append(
            {
                "user_id": c.user_id,
                "kind": "credit" if c.origin == "grant" else "adjustment",
                "amount": c.points,
                "balance_after": balance_after,
                "idempotency_key": c.idempotency_key,
                "lot_id": lot_id,
                "reference": c.reference,
                "reason": c.reason,
            }
        )
    await repo.insert_lots(session, lot_rows)
    written = await _append(session, entry_rows)
    await repo.set_balances(session, final)
    return written


def grant_to_credit(grant: GrantCommand, default_validity_days: int) -> NewCredit:
    expires_at = grant.expires_at or expiry_for(grant.occurred_at, default_validity_days)
    return NewCredit(
        user_id=grant.user_id,
        points=grant.points,
        idempotency_key=f"grant:{grant.grant_id}",
        origin="grant",
        origin_ref=grant.grant_id,
        expires_at=expires_at,
        reason=grant.reason
        or f"task {grant.task_id} completion {grant.completion} ({grant.period_key})",
        reference=grant.causation_event_id,
    )


async def expire_due_lots(
    session: AsyncSession, balances: dict[str, int], now: datetime
) -> list[dict[str, Any]]:
    """Expire the past-due lots of accounts the caller has locked; updates `balances` in place."""
    return await expire_lots(session, balances, await repo.due_lots(session, list(balances), now))


async def expire_lots(
    session: AsyncSession, balances: dict[str, int], due: list[Any]
) -> list[dict[str, Any]]:
    """Expire these past-due lots (locked, of accounts the caller has locked)."""
    if not due:
        return []
    after, final = running_balances(balances, expiry_moves(due))
    balances.update(final)
    entry_rows = [
        {
            "user_id": lot.user_id,
            "kind": "expire",
            "amount": -lot.remaining,
            "balance_after": balance_after,
            "idempotency_key": expiry_journal_key(lot.id),
            "lot_id": lot.id,
            "reference": None,
            "reason": f"points expired at {lot.expires_at.isoformat()}",
        }
        for lot, balance_after in zip(due, after, strict=True)
    ]
    await repo.close_expired_lots(session, [lot.id for lot in due])
    written = await _append(session, entry_rows)
    await repo.set_balances(session, final)
    return written


async def sweep_expired(session: AsyncSession, now: datetime, max_accounts: int) -> int:
    """One batch of the expiry sweep. Replicas skip accounts another replica holds."""
    users = await repo.users_with_due_lots(session, now, max_accounts)
    if not users:
        return 0
    balances = await repo.lock_existing_accounts(session, users, skip_locked=True)
    return len(await expire_due_lots(session, balances, now))


def _key_use(entry: Any) -> KeyUse:
    """What a journal entry used its idempotency key for."""
    return KeyUse(entry.kind, entry.user_id, abs(entry.amount))


def _allocation_view(
    taken: list[tuple[str, int]], expiry: dict[str, datetime | None]
) -> list[dict[str, Any]]:
    """A debit's allocations as the API shows them: earliest expiry first, never-expiring last."""
    rows = [{"lot_id": lot, "points": pts, "expires_at": expiry[lot]} for lot, pts in taken]
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(
        rows, key=lambda a: (a["expires_at"] is None, a["expires_at"] or far, a["lot_id"])
    )


def _debit_view(entry: Any, allocations: list[dict[str, Any]]) -> dict[str, Any]:
    e = entry if isinstance(entry, dict) else entry._mapping
    return {
        "entry_id": e["id"],
        "user_id": e["user_id"],
        "points": -e["amount"],
        "balance_after": e["balance_after"],
        "idempotency_key": e["idempotency_key"],
        "reference": e["reference"],
        "created_at": e["created_at"],
        "allocations": allocations,
    }


DebitOutcome = tuple[dict[str, Any], bool] | DomainError


async def debit_many(
    session: AsyncSession, commands: list[DebitCommand], now: datetime | None = None
) -> list[DebitOutcome]:
    """Spend points for many debits in one unit of work, earliest-expiring lots first.

    Each command gets its own outcome, in order: (result, created), or the DomainError that a
    single debit would have raised (a refusal changes nothing, and does not stop the others).
    The work is set-based: one lock of all the accounts (in user_id order), one lookup of the
    keys already used or voided, one read of the lots, then one write per table.
    """
    now = now or datetime.now(UTC)
    balances = await repo.lock_accounts(session, (c.user_id for c in commands), create=False)
    keys = [c.journal_key for c in commands]
    # Under the account locks: a concurrent request with the same key has either committed
    # (and is a replay here) or has not started its debit.
    existing, voided = await repo.used_keys(session, keys)
    spenders = sorted({c.user_id for c in commands if c.journal_key not in existing})
    spending = {u: balances[u] for u in spenders if u in balances}
    lots, due = await repo.active_lots(session, list(spending), now)
    await expire_lots(session, spending, due)
    expiry = {lot.id: lot.expires_at for user_lots in lots.values() for lot in user_lots}
    used = {key: _key_use(entry) for key, entry in existing.items()}
    verdicts = plan_debits(commands, used, voided, spending, lots)

    outcomes: list[DebitOutcome | None] = [
        v if isinstance(v, DomainError) else None for v in verdicts
    ]
    new = [
        (i, c, v)
        for i, (c, v) in enumerate(zip(commands, verdicts, strict=True))
        if isinstance(v, NewDebit)
    ]
    if new:
        await repo.take_from_lots(session, total_taken(v.taken for _, _, v in new))
        written = await _append(
            session,
            [
                {
                    "user_id": c.user_id,
                    "kind": "debit",
                    "amount": -c.points,
                    "balance_after": v.balance_after,
                    "idempotency_key": c.journal_key,
                    "lot_id": None,
                    "reference": c.reference,
                    "reason": c.reason,
                }
                for _, c, v in new
            ],
        )
        await repo.insert_allocations(
            session,
            [
                (e["id"], lot, pts)
                for e, (_, _, v) in zip(written, new, strict=True)
                for lot, pts in v.taken
            ],
        )
        # Each account ends at the balance after its last debit of the batch.
        await repo.set_balances(
            session,
            {e["user_id"]: v.balance_after for e, (_, _, v) in zip(written, new, strict=True)},
        )
        for e, (i, _, v) in zip(written, new, strict=True):
            outcomes[i] = (_debit_view(e, _allocation_view(v.taken, expiry)), True)
    replayed = {
        existing[c.journal_key].id: None
        for c, v in zip(commands, verdicts, strict=True)
        if isinstance(v, ReplayStored)
    }
    allocs = await repo.allocations_of(session, list(replayed)) if replayed else {}
    for i, (c, verdict) in enumerate(zip(commands, verdicts, strict=True)):
        if isinstance(verdict, ReplayStored):
            done = existing[c.journal_key]
            outcomes[i] = (_debit_view(done, allocs.get(done.id, [])), False)
        elif isinstance(verdict, ReplayInBatch):
            original = outcomes[verdict.index]
            assert isinstance(original, tuple)
            outcomes[i] = (original[0], False)
    return [o for o in outcomes if o is not None]


async def debit(
    session: AsyncSession,
    user_id: str,
    points: int,
    idempotency_key: str,
    reason: str,
    reference: str | None,
    now: datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """Spend points, earliest-expiring lots first. Returns (result, created)."""
    command = DebitCommand(user_id, points, idempotency_key, reason, reference)
    [outcome] = await debit_many(session, [command], now)
    if isinstance(outcome, DomainError):
        raise outcome
    return outcome


async def _replay(session: AsyncSession, key: str, user_id: str, points: int, kind: str) -> Any:
    existing = await repo.entry_by_key(session, key)
    if existing is None:
        return None
    if (refusal := key_reuse(key, _key_use(existing), KeyUse(kind, user_id, points))) is not None:
        raise refusal
    return existing


def _owner(row: Any) -> str | None:
    return None if row is None else row.user_id


def _void_result(void: Any, balance: int, debit_key: str) -> dict[str, Any]:
    return {
        "status": "voided",
        "user_id": void.user_id,
        "debit_idempotency_key": debit_key,
        "entry_id": None,
        "points": 0,
        "expired_points": 0,
        "balance_after": balance,
        "created_at": void.created_at,
        "allocations": [],
    }


async def _refund_result(
    session: AsyncSession, entry: Any, debit_key: str, balance: int
) -> dict[str, Any]:
    allocs = (await repo.allocations_of(session, [entry.id])).get(entry.id, [])
    expiry_keys = [refund_expiry_journal_key(a["lot_id"], entry.idempotency_key) for a in allocs]
    lapsed = {e.lot_id for e in await repo.entries_by_keys(session, expiry_keys)}
    return {
        "status": "refunded",
        "user_id": entry.user_id,
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
) -> tuple[dict[str, Any], bool]:
    """Undo a debit: every point goes back to the lot it came from, with that lot's expiry.

    Points whose lot has expired in the meantime are refunded and expire at once (a refund
    never extends a lot's life). A refund for a debit that never arrived voids its key, so
    the debit is refused if it shows up later. Idempotent per debit. Returns (result, created).
    """
    now = now or datetime.now(UTC)
    dkey, rkey = debit_journal_key(debit_key), refund_journal_key(debit_key)
    balances = await repo.lock_accounts(session, [user_id])
    # Looked up in this order, each only while the ones before found nothing.
    done = await repo.entry_by_key(session, rkey)
    void = None if done is not None else await repo.void_of(session, dkey)
    debit_entry = (
        None if done is not None or void is not None else await repo.entry_by_key(session, dkey)
    )
    step = refund_step(user_id, debit_key, _owner(done), _owner(void), _owner(debit_entry))
    if step == "replay_refund":
        return await _refund_result(session, done, debit_key, balances[user_id]), False
    if step == "replay_void":
        return _void_result(void, balances[user_id], debit_key), False
    if step == "void":
        void = await repo.insert_void(session, dkey, user_id, reason)
        return _void_result(void, balances[user_id], debit_key), True
    assert debit_entry is not None  # step == "refund"
    await expire_due_lots(session, balances, now)
    taken = [
        (a["lot_id"], a["points"])
        for a in (await repo.allocations_of(session, [debit_entry.id])).get(debit_entry.id, [])
    ]
    locked = await repo.lock_lots(session, [lot_id for lot_id, _ in taken])
    restoration = restore(taken, {lot_id: locked[lot_id].expires_at for lot_id, _ in taken}, now)
    await repo.give_back_to_lots(session, restoration.to_lots)
    await repo.mark_lots_expired(session, restoration.lapsed_lots)
    after, final = running_balances(
        balances, refund_moves(user_id, -debit_entry.amount, restoration)
    )
    balances.update(final)
    rows = [
        {
            "user_id": user_id,
            "kind": "refund",
            "amount": -debit_entry.amount,
            "balance_after": after[0],
            "idempotency_key": rkey,
            "lot_id": None,
            "reference": reference or debit_entry.reference,
            "reason": reason,
        }
    ] + [
        {
            "user_id": user_id,
            "kind": "expire",
            "amount": -pts,
            "balance_after": balance_after,
            "idempotency_key": refund_expiry_journal_key(lot_id, rkey),
            "lot_id": lot_id,
            "reference": None,
            "reason": "refunded points whose lot had already expired",
        }
        for (lot_id, pts), balance_after in zip(restoration.expiring, after[1:], strict=True)
    ]
    written = await _append(session, rows)
    await repo.insert_allocations(session, [(written[0]["id"], lot, pts) for lot, pts in taken])
    await repo.set_balances(session, {user_id: balances[user_id]})
    stored = await repo.entry_by_key(session, rkey)
    return await _refund_result(session, stored, debit_key, balances[user_id]), True


async def adjust(
    session: AsyncSession,
    user_id: str,
    points: int,
    idempotency_key: str,
    reason: str,
    expires_at: datetime | None,
    reference: str | None,
) -> tuple[dict[str, Any], bool]:
    """Operations credit (goodwill, corrections). Returns (entry, created)."""
    key = f"adjust:{idempotency_key}"
    if (done := await _replay(session, key, user_id, points, "adjustment")) is not None:
        return dict(done._mapping), False
    [entry] = await credit(
        session,
        [NewCredit(user_id, points, key, "adjustment", key, expires_at, reason, reference)],
    )
    return entry, True


async def account_view(
    session: AsyncSession, user_id: str, now: datetime, soon_days: int
) -> dict[str, Any]:
    account = await repo.balance_of(session, user_id)
    horizon = now + timedelta(days=soon_days)
    upcoming = await repo.upcoming_expiries(session, user_id, now, horizon)
    week = now + timedelta(days=7)
    return {
        "user_id": user_id,
        "balance": account.balance if account else 0,
        "expiring_within_7_days": sum(int(r.points) for r in upcoming if r.first <= week),
        "expiring_within_30_days": sum(int(r.points) for r in upcoming),
        "expiring_soon": [
            {"date": r.first.date().isoformat(), "expires_at": r.first, "points": int(r.points)}
            for r in upcoming
        ],
        "updated_at": account.updated_at if account else None,
    }


async def history(
    session: AsyncSession, user_id: str, limit: int, before_id: int | None
) -> dict[str, Any]:
    rows = await repo.entries_page(session, user_id, limit + 1, before_id)
    page, more = rows[:limit], len(rows) > limit
    allocs = await repo.allocations_of(
        session, [r.id for r in page if r.kind in ("debit", "refund")]
    )
    items = [
        {
            "id": r.id,
            "kind": r.kind,
            "amount": r.amount,
            "balance_after": r.balance_after,
            "idempotency_key": r.idempotency_key,
            "reference": r.reference,
            "reason": r.reason,
            "lot_id": r.lot_id,
            "created_at": r.created_at,
            "allocations": allocs.get(r.id, []),
        }
        for r in page
    ]
    return {"items": items, "next_before_id": page[-1].id if more and page else None}


async def reconcile(session: AsyncSession) -> dict[str, Any]:
    checked, failures = await repo.run_reconciliation(session)
    violations = [{"check": name, "rows": rows} for name, rows in failures.items()]
    return {
        "ok": not violations,
        "accounts_checked": checked,
        "checks": list(repo.RECONCILIATION_CHECKS),
        "violations": violations,
        "checked_at": datetime.now(UTC),
    }
