"""Ledger use cases. They run inside the caller's unit of work and only flush.

Every movement is of one asset on one account (user_id, asset). Accounts are locked first,
in key order, then their lots.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger import repository as repo
from services.rewards_ledger.domain import (
    DEFAULT_ASSET,
    Account,
    AssetNotSpendable,
    DebitCommand,
    ExtendableLot,
    GrantedLot,
    IdempotencyKeyReused,
    KeyUse,
    NewDebit,
    NothingToExtend,
    ReplayInBatch,
    ReplayStored,
    Totals,
    allocate,
    clawback_journal_key,
    debit_journal_key,
    expiry_for,
    expiry_journal_key,
    extension_journal_key,
    grant_journal_key,
    key_reuse,
    lot_id_for,
    plan_clawback,
    plan_debits,
    plan_extension,
    refund_expiry_journal_key,
    refund_journal_key,
    refund_step,
    release_journal_key,
    repay_journal_key,
    restore,
    total_taken,
)

# Re-exported: callers catch service.InsufficientPoints.
from services.rewards_ledger.domain import InsufficientPoints as InsufficientPoints
from services.rewards_ledger.metrics import POINTS_MOVED
from services.rewards_ledger.models import messaging
from shared.errors import DomainError, InvalidInput, NotFound
from shared.events import LEDGER_EVENTS, ClawbackCommand, GrantCommand, LedgerEvent
from shared.messaging import OutgoingEvent, add_to_outbox

EVENT_TYPE = {
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
    asset: str = DEFAULT_ASSET
    available_at: datetime | None = None  # pending until then, when in the future

    @property
    def account(self) -> Account:
        return (self.user_id, self.asset)

    @property
    def lot_id(self) -> str:
        return lot_id_for(self.idempotency_key, self.asset)


def _entry(
    account: Account,
    kind: str,
    key: str,
    totals: Totals,
    amount: int = 0,
    *,
    pending: int = 0,
    debt: int = 0,
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
        "idempotency_key": key,
        "lot_id": lot_id,
        "reference": reference,
        "reason": reason,
    }


def _ledger_event(entry: dict[str, Any]) -> OutgoingEvent:
    event = LedgerEvent(
        type=EVENT_TYPE[entry["kind"]],  # type: ignore[arg-type]
        entry_id=entry["id"],
        user_id=entry["user_id"],
        asset=entry["asset"],
        points=entry["amount"],
        pending=entry["pending_delta"],
        debt=entry["debt_delta"],
        balance_after=entry["balance_after"],
        idempotency_key=entry["idempotency_key"],
        occurred_at=entry["created_at"],
        reference=entry.get("reference"),
        lots=entry.get("lots"),  # the lots a debit or an expiry took from (insights' cycle)
    )
    return OutgoingEvent(LEDGER_EVENTS, entry["user_id"], event.model_dump_json())


async def _append(session: AsyncSession, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write journal entries and their ledger.events in one go."""
    written = await repo.insert_entries(session, entries)
    await add_to_outbox(session, messaging.outbox, [_ledger_event(e) for e in written])
    for e in written:
        POINTS_MOVED.labels(e["kind"]).inc(abs(e["amount"]) + abs(e["pending_delta"]))
    return written


# --- assets ------------------------------------------------------------------------------------


async def assets_of(session: AsyncSession, codes: Iterable[str]) -> dict[str, Any]:
    """The assets named, each checked to exist (404 not_found otherwise)."""
    wanted = set(codes)
    found = await repo.assets_by_codes(session, wanted)
    for code in sorted(wanted - set(found)):
        raise NotFound("asset", code)
    return found


async def require_spendable(session: AsyncSession, asset: str) -> None:
    """Points always are; any other asset is looked up (404 unknown, 409 not spendable)."""
    if asset == DEFAULT_ASSET:
        return
    if not (await assets_of(session, [asset]))[asset].spendable:
        raise AssetNotSpendable(asset)


def _asset_view(row: Any) -> dict[str, Any]:
    return {
        "code": row.code,
        "name": row.name,
        "spendable": row.spendable,
        "expires": row.expires,
        "default_validity_days": row.default_validity_days,
        "created_at": row.created_at,
    }


async def create_asset(
    session: AsyncSession, values: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """Define an asset. The same definition again replays it (created False); another one
    under an existing code is refused (409 asset_exists)."""
    if values["expires"] is False and values.get("default_validity_days") is not None:
        raise InvalidInput("an asset that never expires has no default_validity_days")
    created = await repo.insert_asset(session, values)
    row = await repo.asset_by_code(session, values["code"])
    view = _asset_view(row)
    if not created and any(view[k] != v for k, v in values.items()):
        raise DomainError(
            "asset_exists", f"asset {values['code']!r} exists with another definition"
        )
    return view, created


async def list_assets(session: AsyncSession) -> list[dict[str, Any]]:
    return [_asset_view(r) for r in await repo.all_assets(session)]


async def get_asset(session: AsyncSession, code: str) -> dict[str, Any]:
    return _asset_view((await assets_of(session, [code]))[code])


# --- credits, debts, clawbacks -----------------------------------------------------------------


async def credit(
    session: AsyncSession, credits: list[NewCredit], now: datetime | None = None
) -> list[dict[str, Any]]:
    """Credit many lots at once (one batch of grants): one lock round trip, set-based writes."""
    if not credits:
        return []
    now = now or datetime.now(UTC)
    totals = await repo.lock_accounts(session, (c.account for c in credits))
    written = await _credit_locked(session, credits, totals, now)
    await repo.set_totals(session, totals)
    return written


def _lot_row(c: NewCredit, now: datetime) -> dict[str, Any]:
    return {
        "id": c.lot_id,
        "user_id": c.user_id,
        "asset": c.asset,
        "origin": c.origin,
        "origin_ref": c.origin_ref,
        "points": c.points,
        "remaining": c.points,
        "expires_at": c.expires_at,
        "available_at": c.available_at,
        "status": "pending" if _is_pending(c, now) else "active",
    }


def _is_pending(c: NewCredit, now: datetime) -> bool:
    return c.available_at is not None and c.available_at > now


async def _credit_locked(
    session: AsyncSession,
    credits: list[NewCredit],
    totals: dict[Account, Totals],
    now: datetime,
    *,
    new_lots_only: bool = False,
) -> list[dict[str, Any]]:
    """Credit lots on accounts the caller has locked (updating `totals`, not writing them).

    A lot whose available_at is still to come is credited as pending: it shows, and is not
    spendable. An account in debt repays it from what the batch made available.

    `new_lots_only`: a credit whose lot exists already (its id comes from the idempotency key)
    was applied before and is skipped, as is a repeat inside `credits`: the lot's key is the
    grant consumer's inbox. Otherwise every lot must be new.
    """
    if new_lots_only:
        fresh = await repo.insert_new_lots(session, [_lot_row(c, now) for c in credits])
        new_credits = []
        for c in credits:
            if c.lot_id in fresh:
                fresh.discard(c.lot_id)
                new_credits.append(c)
        credits = new_credits
    else:
        await repo.insert_lots(session, [_lot_row(c, now) for c in credits])
    entry_rows = []
    repay_after: dict[Account, str] = {}
    for c in credits:
        t = totals[c.account]
        if _is_pending(c, now):
            t.pending += c.points
            kind, amount = "pending", 0
        else:
            t.balance += c.points
            kind, amount = ("credit" if c.origin == "grant" else "adjustment"), c.points
            repay_after[c.account] = c.idempotency_key
        entry_rows.append(
            _entry(
                c.account,
                kind,
                c.idempotency_key,
                t,
                amount,
                pending=c.points - amount,
                lot_id=c.lot_id,
                reference=c.reference,
                reason=c.reason,
            )
        )
    written = await _append(session, entry_rows)
    await _repay_debts(session, totals, repay_after, now)
    return written


async def _repay_debts(
    session: AsyncSession,
    totals: dict[Account, Totals],
    triggers: dict[Account, str],
    now: datetime,
) -> None:
    """Accounts (locked) that just gained available points repay their debt from them first,
    earliest-expiring lots first. `triggers`: account -> the journal key that gained them."""
    owing = sorted(a for a in triggers if totals[a].debt > 0 and totals[a].balance > 0)
    if not owing:
        return
    lots, due = await repo.active_lots(session, owing, now)
    await expire_lots(session, totals, due)
    rows, takings = [], []
    for account in owing:
        t = totals[account]
        amount = min(t.debt, t.balance)
        if amount <= 0:
            continue
        takings.append(allocate(lots[account], amount))
        t.balance -= amount
        t.debt -= amount
        rows.append(
            _entry(
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
    written = await _append(session, rows)
    await repo.insert_allocations(
        session,
        [
            (e["id"], lot, pts)
            for e, taken in zip(written, takings, strict=True)
            for lot, pts in taken
        ],
    )


# Points are built in and cannot be redefined: no lookup for them on the hot path.
POINTS_EXPIRE = True


def grant_to_credit(
    grant: GrantCommand, default_validity_days: int, expires: bool = POINTS_EXPIRE
) -> NewCredit:
    """A grant as a credit. An asset that never expires ignores the grant's expiry; one that
    does uses it, or `default_validity_days` from when the behavior happened."""
    expires_at = None
    if expires:
        expires_at = grant.expires_at or expiry_for(grant.occurred_at, default_validity_days)
    return NewCredit(
        user_id=grant.user_id,
        points=grant.points,
        idempotency_key=grant_journal_key(grant.grant_id),
        origin="grant",
        origin_ref=grant.grant_id,
        expires_at=expires_at,
        reason=grant.reason
        or f"task {grant.task_id} completion {grant.completion} ({grant.period_key})",
        reference=grant.causation_event_id,
        asset=grant.asset,
        available_at=grant.available_at,
    )


async def apply_rewards(
    session: AsyncSession,
    commands: Sequence[GrantCommand | ClawbackCommand],
    default_validity_days: int,
    now: datetime | None = None,
) -> None:
    """A batch of rewards.grants: credit the grants, then take back what clawbacks ask for.

    Every account of the batch is locked once, up front, in key order. A grant of an asset the
    ledger does not know raises NotFound (the consumer dead-letters that message alone).
    """
    now = now or datetime.now(UTC)
    known = await assets_of(session, {c.asset for c in commands if c.asset != DEFAULT_ASSET})
    credits: list[NewCredit] = []
    targets: dict[str, dict[str, Any]] = {}
    for c in commands:
        if isinstance(c, GrantCommand):
            asset = known.get(c.asset)
            expires = POINTS_EXPIRE if asset is None else asset.expires
            days = (asset.default_validity_days if asset is not None else None) or (
                default_validity_days
            )
            credits.append(grant_to_credit(c, days, expires))
        else:
            lot_id = lot_id_for(grant_journal_key(c.grant_id), c.asset)
            previous = targets.get(lot_id, {"target": 0})["target"]
            targets[lot_id] = {
                "lot_id": lot_id,
                "grant_id": c.grant_id,
                "user_id": c.user_id,
                "asset": c.asset,
                "target": max(previous, c.clawed_total),
                "reference": c.reference,
                "reason": c.reason or f"clawed back: {c.reference}",
            }
    totals = await repo.lock_accounts(
        session,
        [c.account for c in credits] + [(t["user_id"], t["asset"]) for t in targets.values()],
    )
    written = await _credit_locked(session, credits, totals, now, new_lots_only=True)
    await repo.record_clawback_targets(session, list(targets.values()))
    # Also the new grants' lots: a clawback that came before its grant applies now.
    await _apply_clawbacks(session, totals, [*targets, *(e["lot_id"] for e in written)], now)
    await repo.set_totals(session, totals)


async def _apply_clawbacks(
    session: AsyncSession, totals: dict[Account, Totals], lot_ids: Sequence[str], now: datetime
) -> None:
    """Reverse what is left to reverse of these lots' clawbacks (their accounts are locked).

    Each clawback is one journal entry: pending points of the grant's lot cancelled, available
    points taken back (its own lot first, then the others, earliest-expiring first), and the
    rest, already spent, recorded as debt.
    """
    for claw in await repo.open_clawbacks(session, sorted(set(lot_ids))):
        account = (claw.user_id, claw.asset)  # the lot's own account (open_clawbacks)
        if account not in totals:
            continue  # recorded under another user than this batch's: not locked here
        spendable, due = await repo.active_lots(session, [account], now)
        await expire_lots(session, totals, due)
        own = await repo.lot_of(session, claw.lot_id)
        plan = plan_clawback(
            claw.target - claw.applied,
            GrantedLot(own.id, own.status, own.remaining),
            spendable[account],
        )
        t = totals[account]
        t.balance -= plan.taken_total
        t.pending -= plan.cancelled
        t.debt += plan.debt
        takes = ([(own.id, plan.cancelled)] if plan.cancelled else []) + plan.taken
        await repo.take_from_lots(session, total_taken([takes]))
        [entry] = await _append(
            session,
            [
                _entry(
                    account,
                    "clawback",
                    clawback_journal_key(claw.lot_id, claw.target),
                    t,
                    -plan.taken_total,
                    pending=-plan.cancelled,
                    debt=plan.debt,
                    lot_id=claw.lot_id,
                    reference=claw.reference,
                    reason=claw.reason,
                )
            ],
        )
        await repo.insert_allocations(session, [(entry["id"], lot, pts) for lot, pts in takes])
        await repo.set_clawback_applied(session, claw.lot_id, claw.target)


# --- sweeps ------------------------------------------------------------------------------------


async def expire_due_lots(
    session: AsyncSession, totals: dict[Account, Totals], now: datetime
) -> list[dict[str, Any]]:
    """Expire the past-due lots of accounts the caller has locked; updates `totals` in place."""
    return await expire_lots(session, totals, await repo.due_lots(session, list(totals), now))


async def expire_lots(
    session: AsyncSession, totals: dict[Account, Totals], due: list[Any]
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
        entry = _entry(
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
    return await _append(session, entry_rows)


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
            _entry(
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
    await _append(session, rows)
    await _repay_debts(session, totals, triggers, now)
    await repo.set_totals(session, totals)
    return len(due)


# --- debits and refunds ------------------------------------------------------------------------


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
        "asset": e["asset"],
        "points": -e["amount"],
        "balance_after": e["balance_after"],
        "idempotency_key": e["idempotency_key"],
        "reference": e["reference"],
        "created_at": e["created_at"],
        "allocations": allocations,
    }


DebitOutcome = tuple[dict[str, Any], bool] | DomainError


async def _asset_refusals(session: AsyncSession, codes: Iterable[str]) -> dict[str, DomainError]:
    """Why debits of these assets are refused: unknown (404) or not spendable (409)."""
    wanted = {c for c in codes if c != DEFAULT_ASSET}
    if not wanted:
        return {}
    found = await repo.assets_by_codes(session, wanted)
    refusals: dict[str, DomainError] = {}
    for code in wanted:
        if code not in found:
            refusals[code] = NotFound("asset", code)
        elif not found[code].spendable:
            refusals[code] = AssetNotSpendable(code)
    return refusals


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
    refusals = await _asset_refusals(session, (c.asset for c in commands))
    verdicts: list[Any] = [refusals.get(c.asset) for c in commands]
    live = [i for i, c in enumerate(commands) if verdicts[i] is None]
    totals = await repo.lock_accounts(session, (commands[i].account for i in live), create=False)
    # Under the account locks: a concurrent request with the same key has either committed
    # (and is a replay here) or has not started its debit.
    existing, voided = await repo.used_keys(
        session, [(commands[i].journal_key, commands[i].asset) for i in live]
    )
    spending = {
        c.account: totals[c.account]
        for c in (commands[i] for i in live)
        if (c.journal_key, c.asset) not in existing and c.account in totals
    }
    lots, due = await repo.active_lots(session, sorted(spending), now)
    await expire_lots(session, spending, due)
    expiry = {lot.id: lot.expires_at for account_lots in lots.values() for lot in account_lots}
    earned = {lot.id: lot.created_at for account_lots in lots.values() for lot in account_lots}
    by_asset: dict[str, list[int]] = {}
    for i in live:
        by_asset.setdefault(commands[i].asset, []).append(i)
    for asset, indexes in by_asset.items():
        planned = plan_debits(
            [commands[i] for i in indexes],
            {k: _key_use(e) for (k, a), e in existing.items() if a == asset},
            {k for k, a in voided if a == asset},
            {u: t.balance for (u, a), t in spending.items() if a == asset},
            {u: account_lots for (u, a), account_lots in lots.items() if a == asset},
        )
        for i, verdict in zip(indexes, planned, strict=True):
            verdicts[i] = (
                ReplayInBatch(indexes[verdict.index])
                if isinstance(verdict, ReplayInBatch)
                else verdict
            )

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
        rows = []
        for _, c, v in new:
            spending[c.account].balance = v.balance_after
            entry = _entry(
                c.account,
                "debit",
                c.journal_key,
                Totals(v.balance_after),
                -c.points,
                reference=c.reference,
                reason=c.reason,
            )
            entry["lots"] = [
                {"lot_id": lot, "points": pts, "earned_at": earned[lot], "expires_at": expiry[lot]}
                for lot, pts in v.taken
            ]
            rows.append(entry)
        written = await _append(session, rows)
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
    if new or due:
        await repo.set_totals(session, spending)
    replayed = {
        existing[(c.journal_key, c.asset)].id: None
        for c, v in zip(commands, verdicts, strict=True)
        if isinstance(v, ReplayStored)
    }
    allocs = await repo.allocations_of(session, list(replayed)) if replayed else {}
    for i, (c, verdict) in enumerate(zip(commands, verdicts, strict=True)):
        if isinstance(verdict, ReplayStored):
            done = existing[(c.journal_key, c.asset)]
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
    asset: str = DEFAULT_ASSET,
) -> tuple[dict[str, Any], bool]:
    """Spend points, earliest-expiring lots first. Returns (result, created)."""
    command = DebitCommand(user_id, points, idempotency_key, reason, reference, asset)
    [outcome] = await debit_many(session, [command], now)
    if isinstance(outcome, DomainError):
        raise outcome
    return outcome


async def _replay(
    session: AsyncSession, key: str, asset: str, user_id: str, points: int, kind: str
) -> Any:
    existing = await repo.entry_by_key(session, key, asset)
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
    session: AsyncSession, entry: Any, debit_key: str, balance: int
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
        return await _refund_result(session, done, debit_key, t.balance), False
    if step == "replay_void":
        return _void_result(void, t.balance, debit_key), False
    if step == "void":
        void = await repo.insert_void(session, dkey, asset, user_id, reason)
        return _void_result(void, t.balance, debit_key), True
    assert debit_entry is not None  # step == "refund"
    await expire_due_lots(session, totals, now)
    taken = [
        (a["lot_id"], a["points"])
        for a in (await repo.allocations_of(session, [debit_entry.id])).get(debit_entry.id, [])
    ]
    locked = await repo.lock_lots(session, [lot_id for lot_id, _ in taken])
    restoration = restore(taken, {lot_id: locked[lot_id].expires_at for lot_id, _ in taken}, now)
    await repo.give_back_to_lots(session, restoration.to_lots)
    await repo.mark_lots_expired(session, restoration.lapsed_lots)
    t.balance -= debit_entry.amount
    rows = [
        _entry(
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
            _entry(
                account,
                "expire",
                refund_expiry_journal_key(lot_id, rkey),
                t,
                -pts,
                lot_id=lot_id,
                reason="refunded points whose lot had already expired",
            )
        )
    written = await _append(session, rows)
    await repo.insert_allocations(session, [(written[0]["id"], lot, pts) for lot, pts in taken])
    await _repay_debts(session, totals, {account: rkey}, now)
    await repo.set_totals(session, totals)
    stored = await repo.entry_by_key(session, rkey, asset)
    return await _refund_result(session, stored, debit_key, t.balance), True


async def adjust(
    session: AsyncSession,
    user_id: str,
    points: int,
    idempotency_key: str,
    reason: str,
    expires_at: datetime | None,
    reference: str | None,
    *,
    asset: str = DEFAULT_ASSET,
    validity_days: int | None = None,
    default_validity_days: int = 365,
    now: datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """Operations credit (goodwill, corrections) of any asset. An expiring asset's lot
    expires at `expires_at`, or after `validity_days`, or after the asset's (else the
    service's) default validity; other assets never expire. Returns (entry, created)."""
    now = now or datetime.now(UTC)
    spec = (await assets_of(session, [asset]))[asset]
    key = f"adjust:{idempotency_key}"
    if (done := await _replay(session, key, asset, user_id, points, "adjustment")) is not None:
        return dict(done._mapping), False
    if not spec.expires:
        if expires_at is not None or validity_days is not None:
            raise InvalidInput(f"{asset} never expires: give no expires_at or validity_days")
    elif expires_at is None:
        days = validity_days or spec.default_validity_days or default_validity_days
        expires_at = now + timedelta(days=days)
    [entry] = await credit(
        session,
        [NewCredit(user_id, points, key, "adjustment", key, expires_at, reason, reference, asset)],
        now,
    )
    return entry, True


# --- extensions --------------------------------------------------------------------------------


async def _extension_view(session: AsyncSession, entry: Any) -> dict[str, Any]:
    e = entry if isinstance(entry, dict) else entry._mapping
    extended = await repo.extensions_of(session, e["id"])
    allocs = (await repo.allocations_of(session, [e["id"]])).get(e["id"], [])
    return {
        "entry_id": e["id"],
        "user_id": e["user_id"],
        "asset": e["asset"],
        "days": (extended[0].new_expires_at - extended[0].old_expires_at).days if extended else 0,
        "fee": -e["amount"],
        "points_extended": sum(r.remaining for r in extended),
        "balance_after": e["balance_after"],
        "created_at": e["created_at"],
        "lots": [
            {
                "lot_id": r.lot_id,
                "old_expires_at": r.old_expires_at,
                "new_expires_at": r.new_expires_at,
            }
            for r in extended
        ],
        "fee_allocations": allocs,
    }


async def extend(
    session: AsyncSession,
    user_id: str,
    days: int,
    idempotency_key: str,
    *,
    asset: str = DEFAULT_ASSET,
    window_days: int,
    fee_percent: float,
    fee_minimum: int,
    now: datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """积分延期: push back by `days` the expiry of every lot expiring within `window_days`
    (each lot at most once), for a fee taken from the other lots, earliest-expiring first.
    Refused with nothing_to_extend or insufficient_points. Same key, same result."""
    now = now or datetime.now(UTC)
    await require_spendable(session, asset)
    account = (user_id, asset)
    key = extension_journal_key(idempotency_key)
    totals = await repo.lock_accounts(session, [account], create=False)
    done = await repo.entry_by_key(session, key, asset)
    if done is not None:
        view = await _extension_view(session, done)
        if done.user_id != user_id or view["days"] != days:
            raise IdempotencyKeyReused(idempotency_key, "extension")
        return view, False
    if account not in totals:
        raise NothingToExtend(window_days)
    await expire_due_lots(session, totals, now)
    lots = [
        ExtendableLot(r.id, r.remaining, r.expires_at, r.created_at, r.extended)
        for r in await repo.extendable_lots(session, user_id, asset)
    ]
    plan = plan_extension(lots, now, window_days, days, fee_percent, fee_minimum)
    t = totals[account]
    t.balance -= plan.fee
    await repo.take_from_lots(session, plan.fee_taken)
    [entry] = await _append(
        session,
        [
            _entry(
                account,
                "extension",
                key,
                t,
                -plan.fee,
                reason=f"extended {len(plan.extended)} lots ({plan.points} points) by {days} days "
                f"for a fee of {plan.fee}",
            )
        ],
    )
    await repo.insert_allocations(session, [(entry["id"], lot, pts) for lot, pts in plan.fee_taken])
    await repo.extend_lots(session, entry["id"], plan.extended)
    await repo.set_totals(session, totals)
    return await _extension_view(session, entry), True


# --- views -------------------------------------------------------------------------------------


async def account_view(
    session: AsyncSession,
    user_id: str,
    now: datetime,
    soon_days: int,
    asset: str = DEFAULT_ASSET,
) -> dict[str, Any]:
    if asset != DEFAULT_ASSET:
        await assets_of(session, [asset])
    account = await repo.totals_of(session, user_id, asset)
    horizon = now + timedelta(days=soon_days)
    upcoming = await repo.upcoming_expiries(session, user_id, asset, now, horizon)
    pending = (
        await repo.pending_lots_of(session, user_id, asset) if account and account.pending else []
    )
    week = now + timedelta(days=7)
    return {
        "user_id": user_id,
        "asset": asset,
        "balance": account.balance if account else 0,
        "pending": account.pending if account else 0,
        "debt": account.debt if account else 0,
        "expiring_within_7_days": sum(int(r.points) for r in upcoming if r.first <= week),
        "expiring_within_30_days": sum(int(r.points) for r in upcoming),
        "expiring_soon": [
            {"date": r.first.date().isoformat(), "expires_at": r.first, "points": int(r.points)}
            for r in upcoming
        ],
        "pending_lots": [
            {"lot_id": r.id, "points": r.remaining, "available_at": r.available_at} for r in pending
        ],
        "updated_at": account.updated_at if account else None,
    }


async def balances(session: AsyncSession, user_id: str) -> dict[str, Any]:
    """Every asset the ledger knows, with what this user holds of it."""
    held = await repo.accounts_of_user(session, user_id)
    items = []
    for asset in await repo.all_assets(session):
        row = held.get(asset.code)
        items.append(
            {
                "asset": asset.code,
                "name": asset.name,
                "spendable": asset.spendable,
                "balance": row.balance if row else 0,
                "pending": row.pending if row else 0,
                "debt": row.debt if row else 0,
            }
        )
    return {"user_id": user_id, "items": items}


ALLOCATED_KINDS = ("debit", "refund", "clawback", "debt_repaid", "extension")


async def history(
    session: AsyncSession,
    user_id: str,
    limit: int,
    before_id: int | None,
    asset: str = DEFAULT_ASSET,
) -> dict[str, Any]:
    rows = await repo.entries_page(session, user_id, asset, limit + 1, before_id)
    page, more = rows[:limit], len(rows) > limit
    allocs = await repo.allocations_of(session, [r.id for r in page if r.kind in ALLOCATED_KINDS])
    items = []
    for r in page:
        item = {
            "id": r.id,
            "asset": r.asset,
            "kind": r.kind,
            "amount": r.amount,
            "balance_after": r.balance_after,
            "pending_delta": r.pending_delta,
            "debt_delta": r.debt_delta,
            "idempotency_key": r.idempotency_key,
            "reference": r.reference,
            "reason": r.reason,
            "lot_id": r.lot_id,
            "created_at": r.created_at,
            "allocations": allocs.get(r.id, []),
            "extended_lots": [],
        }
        if r.kind == "extension":
            item["extended_lots"] = (await _extension_view(session, r))["lots"]
        items.append(item)
    return {"items": items, "next_before_id": page[-1].id if more and page else None}


def _month_starts(now: datetime, tz: Any, count: int) -> list[datetime]:
    local = now.astimezone(tz)
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    months = []
    for _ in range(count + 1):
        months.append(first)
        first = (first + timedelta(days=32)).replace(day=1)
    return months


async def liability_report(
    session: AsyncSession, asset: str, now: datetime, tz: Any
) -> dict[str, Any]:
    """What the ledger owes in one asset: outstanding, pending and debt now, what expires in
    each of the next 12 months (business timezone), and the last 30 days' movements."""
    await assets_of(session, [asset])
    months = _month_starts(now, tz, 12)
    since = now - timedelta(days=30)
    totals, expiring, flows = await repo.liability(session, asset, now, months[-1], since, str(tz))
    by_month = {r.month: int(r.points) for r in expiring}
    kind = {r.kind: r for r in flows}

    def moved(k: str, field: str = "amount") -> int:
        return int(getattr(kind[k], field)) if k in kind else 0

    return {
        "asset": asset,
        "as_of": now,
        "outstanding": int(totals.outstanding),
        "pending": int(totals.pending),
        "debt": int(totals.debt),
        "holders": int(totals.holders),
        "expiring_by_month": [
            {"month": m.strftime("%Y-%m"), "points": by_month.get(m.strftime("%Y-%m"), 0)}
            for m in months[:-1]
        ],
        "last_30_days": {
            "since": since,
            "issued": moved("credit") + moved("adjustment") + moved("pending", "pending"),
            "released": moved("release"),
            "spent": -(moved("debit") + moved("extension") + moved("refund")),
            "expired": -moved("expire"),
            "clawed_back": -(moved("clawback") + moved("clawback", "pending"))
            + moved("clawback", "debt"),
            "debt_repaid": -moved("debt_repaid", "debt"),
        },
    }


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
