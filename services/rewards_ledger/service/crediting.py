"""Crediting: lots from grants (rewards.grants) and operations adjustments, pending lots, and
the clawbacks that take granted points back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger import repository as repo
from services.rewards_ledger.domain import (
    DEFAULT_ASSET,
    Account,
    Totals,
    clawback_journal_key,
    grant_journal_key,
    lot_id_for,
    plan_clawback,
    total_taken,
)
from services.rewards_ledger.repository.rows import AssetRow
from services.rewards_ledger.service.accounts import (
    append,
    entry_row,
    expire_lots,
    repay_debts,
    replay,
)
from services.rewards_ledger.service.assets import assets_of
from shared.errors import InvalidInput
from shared.events import ClawbackCommand, GrantCommand
from shared.validity import DEFAULT_TZ, Validity, expires_at_for, validity_of


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
            entry_row(
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
    written = await append(session, entry_rows)
    await repay_debts(session, totals, repay_after, now)
    return written


# --- grants and clawbacks (rewards.grants) -----------------------------------------------------

# Points are built in and cannot be redefined: no lookup for them on the hot path.
POINTS_EXPIRE = True


def grant_to_credit(
    grant: GrantCommand,
    default_validity: Validity | int,
    expires: bool = POINTS_EXPIRE,
    tz: tzinfo = DEFAULT_TZ,
) -> NewCredit:
    """A grant as a credit. An asset that never expires ignores the grant's expiry; one that
    does expires at the grant's `expires_at`, else after the grant's own validity, else after
    `default_validity` (a number: days), counted from when the behavior happened in the
    business timezone `tz`."""
    expires_at = None
    if expires:
        expires_at = grant.expires_at or expires_at_for(
            grant.occurred_at, grant.validity or _validity(default_validity), tz
        )
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


def _validity(v: Validity | int) -> Validity:
    return v if isinstance(v, Validity) else Validity.of_days(v)


async def apply_rewards(
    session: AsyncSession,
    commands: Sequence[GrantCommand | ClawbackCommand],
    default_validity: Validity | int,
    now: datetime | None = None,
    tz: tzinfo = DEFAULT_TZ,
) -> None:
    """A batch of rewards.grants: credit the grants, then take back what clawbacks ask for.
    `default_validity` is points' (a number: days); `tz` the business timezone.

    Every account of the batch is locked once, up front, in key order. A grant of an asset the
    ledger does not know raises NotFound (the consumer dead-letters that message alone).
    """
    now = now or datetime.now(UTC)
    known = await assets_of(session, {c.asset for c in commands if c.asset != DEFAULT_ASSET})
    credits = [
        _grant_credit(c, known, _validity(default_validity), tz)
        for c in commands
        if isinstance(c, GrantCommand)
    ]
    targets = _clawback_targets([c for c in commands if isinstance(c, ClawbackCommand)])
    totals = await repo.lock_accounts(
        session,
        [c.account for c in credits] + [(t["user_id"], t["asset"]) for t in targets.values()],
    )
    written = await _credit_locked(session, credits, totals, now, new_lots_only=True)
    await repo.record_clawback_targets(session, list(targets.values()))
    # Also the new grants' lots: a clawback that came before its grant applies now.
    await _apply_clawbacks(session, totals, [*targets, *(e["lot_id"] for e in written)], now)
    await repo.set_totals(session, totals)


def _grant_credit(
    grant: GrantCommand, known: dict[str, AssetRow], points_validity: Validity, tz: tzinfo
) -> NewCredit:
    """A grant as a credit, with its asset's expiry rules (points: the built-in ones)."""
    asset = known.get(grant.asset)
    if asset is None:
        return grant_to_credit(grant, points_validity, POINTS_EXPIRE, tz)
    own = validity_of(asset.default_validity, asset.default_validity_days)
    return grant_to_credit(grant, own or points_validity, asset.expires, tz)


def _clawback_targets(clawbacks: Sequence[ClawbackCommand]) -> dict[str, dict[str, Any]]:
    """lot id -> the clawback target to record: the highest total the batch asks for."""
    targets: dict[str, dict[str, Any]] = {}
    for c in clawbacks:
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
    return targets


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
        assert own is not None  # open_clawbacks only finds clawbacks whose lot exists
        plan = plan_clawback(claw.target - claw.applied, own, spendable[account])
        t = totals[account]
        t.balance -= plan.taken_total
        t.pending -= plan.cancelled
        t.debt += plan.debt
        takes = ([(own.id, plan.cancelled)] if plan.cancelled else []) + plan.taken
        await repo.take_from_lots(session, total_taken([takes]))
        [entry] = await append(
            session,
            [
                entry_row(
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


# --- operations adjustments --------------------------------------------------------------------


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
    default_validity: Validity | int = 365,
    now: datetime | None = None,
    validity: Validity | None = None,
    tz: tzinfo = DEFAULT_TZ,
) -> tuple[dict[str, Any], bool]:
    """Operations credit (goodwill, corrections) of any asset. An expiring asset's lot
    expires at `expires_at`, or after `validity` (or `validity_days`), or after the asset's
    (else the service's) default validity, from now in the business timezone `tz`; other
    assets never expire. Returns (entry, created)."""
    now = now or datetime.now(UTC)
    spec = (await assets_of(session, [asset]))[asset]
    key = f"adjust:{idempotency_key}"
    if (done := await replay(session, key, asset, user_id, points, "adjustment")) is not None:
        return asdict(done), False
    if not spec.expires:
        if expires_at is not None or validity_days is not None or validity is not None:
            raise InvalidInput(f"{asset} never expires: give no expires_at or validity")
    elif expires_at is None:
        chosen = (
            validity
            or validity_of(None, validity_days)
            or validity_of(spec.default_validity, spec.default_validity_days)
            or _validity(default_validity)
        )
        expires_at = expires_at_for(now, chosen, tz)
    [entry] = await credit(
        session,
        [NewCredit(user_id, points, key, "adjustment", key, expires_at, reason, reference, asset)],
        now,
    )
    return entry, True
