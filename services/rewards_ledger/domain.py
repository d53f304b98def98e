"""Pure ledger rules: no I/O, no session. The use cases in service/ fetch the data, ask these
functions what to do, and write the answer.

- lots: spending order, allocation of a debit across lots, expiry dates, which lots are due;
- balances: the balance after each journal entry of a batch;
- idempotency: a key used again with the same parameters is a replay, otherwise a refusal;
- debits: how a batch of debits is judged (replay, refusal, or a new debit and its lots);
- refunds and voids: what a refund does (replay, void, refund) and where its points go;
- assets, pending lots, clawbacks with debt, and paid extensions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from math import ceil
from typing import Literal, Protocol

from shared.errors import DomainError, NotFound
from shared.events import stable_id

# --- journal keys ------------------------------------------------------------------------------

DEFAULT_ASSET = "points"
Account = tuple[str, str]  # (user_id, asset): every balance, lot and key belongs to one


def lot_id_for(journal_key: str, asset: str) -> str:
    """The lot a credit creates: one per (journal key, asset). Points keep the id they always
    had, so a clawback finds a grant's lot from the grant id alone."""
    if asset == DEFAULT_ASSET:
        return stable_id("lot", journal_key)
    return stable_id("lot", asset, journal_key)


def grant_journal_key(grant_id: str) -> str:
    return f"grant:{grant_id}"


def release_journal_key(lot_id: str) -> str:
    """The journal key of a pending lot becoming available."""
    return f"release:{lot_id}"


def repay_journal_key(trigger_key: str) -> str:
    """The journal key of the debt repaid from what the movement `trigger_key` (a credit, a
    release, a refund) made available."""
    return f"repay:{trigger_key}"


def clawback_journal_key(lot_id: str, target: int) -> str:
    """The journal key of the clawback that brought a lot's reversed total to `target`."""
    return f"clawback:{lot_id}:{target}"


def extension_journal_key(key: str) -> str:
    return f"extension:{key}"


def debit_journal_key(key: str) -> str:
    """The journal key of the debit made with the caller's idempotency key."""
    return f"debit:{key}"


def refund_journal_key(key: str) -> str:
    """The journal key of the refund of the debit made with the caller's idempotency key."""
    return f"refund:{key}"


def expiry_journal_key(lot_id: str) -> str:
    """The journal key of a lot's expiry."""
    return f"expire:{lot_id}"


def refund_expiry_journal_key(lot_id: str, refund_key: str) -> str:
    """The journal key of refunded points that expire at once because their lot had expired
    (`refund_key`: the refund's journal key)."""
    return f"expire:{lot_id}:{refund_key}"


# --- refusals ----------------------------------------------------------------------------------


class InsufficientPoints(DomainError):
    def __init__(self, balance: int, requested: int) -> None:
        super().__init__(
            "insufficient_points",
            f"balance {balance} is less than the {requested} points requested",
            balance=balance,
            requested=requested,
        )


class IdempotencyKeyReused(DomainError):
    def __init__(self, key: str, kind: str) -> None:
        super().__init__(
            "idempotency_key_reused",
            f"idempotency key {key!r} was already used for a different {kind}",
        )


class DebitVoided(DomainError):
    def __init__(self, key: str) -> None:
        super().__init__(
            "debit_voided", f"debit {key!r} was cancelled before it arrived; use a new key"
        )


class AssetNotSpendable(DomainError):
    def __init__(self, asset: str) -> None:
        super().__init__(
            "asset_not_spendable", f"{asset} cannot be spent (it only counts)", asset=asset
        )


class NothingToExtend(DomainError):
    def __init__(self, window_days: int) -> None:
        super().__init__(
            "nothing_to_extend",
            f"no points expire within {window_days} days that were not extended before",
            window_days=window_days,
        )


# --- accounts ----------------------------------------------------------------------------------


@dataclass
class Totals:
    """What an account holds: available balance, pending, and debt."""

    balance: int = 0
    pending: int = 0
    debt: int = 0


# --- lots --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpendableLot:
    id: str
    remaining: int
    expires_at: datetime | None
    created_at: datetime


def spending_order(lot: SpendableLot) -> tuple[bool, datetime, datetime, str]:
    """Earliest expiry first; lots that never expire last; ties by age, then id."""
    return (lot.expires_at is None, lot.expires_at or lot.created_at, lot.created_at, lot.id)


def allocate(lots: Sequence[SpendableLot], points: int) -> list[tuple[str, int]]:
    """Split `points` over lots, earliest-expiring first (`spending_order`).

    Returns (lot_id, points_taken) pairs in spending order; every pair takes at least one point
    and at most what the lot has; only the last lot taken from may keep points. Raises
    InsufficientPoints (with what the lots hold) when they hold less than `points`.
    """
    if points <= 0:
        raise ValueError("points must be positive")
    available = sum(lot.remaining for lot in lots if lot.remaining > 0)
    if available < points:
        raise InsufficientPoints(available, points)
    taken: list[tuple[str, int]] = []
    left = points
    for lot in sorted(lots, key=spending_order):
        if left == 0:
            break
        if lot.remaining <= 0:
            continue
        take = min(lot.remaining, left)
        taken.append((lot.id, take))
        left -= take
    return taken


def after_taking(
    lots: Sequence[SpendableLot], taken: Iterable[tuple[str, int]]
) -> list[SpendableLot]:
    """The lots once `taken` has been spent from them; emptied lots are left out."""
    took = dict(taken)
    if not took:
        return list(lots)
    left = []
    for lot in lots:
        if lot.id in took:
            lot = replace(lot, remaining=lot.remaining - took[lot.id])
        if lot.remaining > 0:
            left.append(lot)
    return left


def total_taken(takings: Iterable[Iterable[tuple[str, int]]]) -> list[tuple[str, int]]:
    """Several allocations summed per lot (each lot once, in the order first taken from)."""
    per_lot: dict[str, int] = {}
    for taken in takings:
        for lot_id, pts in taken:
            per_lot[lot_id] = per_lot.get(lot_id, 0) + pts
    return list(per_lot.items())


def is_due(expires_at: datetime | None, now: datetime) -> bool:
    """A lot has expired once its expiry is reached; a lot without one never expires."""
    return expires_at is not None and expires_at <= now


def expiry_for(occurred_at: datetime, validity_days: int) -> datetime:
    return occurred_at + timedelta(days=validity_days)


# --- balances ----------------------------------------------------------------------------------


def running_balances(
    start: Mapping[str, int], moves: Iterable[tuple[str, int]]
) -> tuple[list[int], dict[str, int]]:
    """Post (user_id, amount) moves in order onto the `start` balances (every user of a move
    must have one). Returns each move's balance_after and the final balance of every user
    moved (in the order first moved); `start` is not changed."""
    final: dict[str, int] = {}
    after = []
    for user_id, amount in moves:
        balance = (final[user_id] if user_id in final else start[user_id]) + amount
        final[user_id] = balance
        after.append(balance)
    return after, final


class DueLot(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def remaining(self) -> int: ...


def expiry_moves(due: Iterable[DueLot]) -> list[tuple[str, int]]:
    """Expiring lots takes what is left in each off its owner's balance."""
    return [(lot.user_id, -lot.remaining) for lot in due]


# --- idempotency -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyUse:
    """What a journal key was (or is being) used for. Reason and reference are not part of it:
    a repeat that differs only in those replays the original."""

    kind: str  # the journal entry kind: debit, adjustment, ...
    user_id: str
    points: int  # the size of the movement, always positive


def key_reuse(key: str, previous: KeyUse, attempt: KeyUse) -> IdempotencyKeyReused | None:
    """A key used again: None when `attempt` is a replay of `previous` (same kind, user and
    points), else the refusal (409 idempotency_key_reused)."""
    if previous == attempt:
        return None
    return IdempotencyKeyReused(key, previous.kind)


# --- debits ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DebitCommand:
    user_id: str
    points: int
    idempotency_key: str  # the caller's key; the journal stores it as "debit:<key>"
    reason: str = ""
    reference: str | None = None
    asset: str = DEFAULT_ASSET

    @property
    def journal_key(self) -> str:
        return debit_journal_key(self.idempotency_key)

    @property
    def account(self) -> Account:
        return (self.user_id, self.asset)


@dataclass(frozen=True)
class NewDebit:
    """Debit the account: balance_after is the account's balance once done."""

    balance_after: int
    taken: list[tuple[str, int]]  # (lot_id, points), in spending order


@dataclass(frozen=True)
class ReplayStored:
    """The key's debit is in the journal from before: answer it (not created)."""


@dataclass(frozen=True)
class ReplayInBatch:
    """An earlier command of the same batch made this debit: answer it (not created)."""

    index: int


DebitVerdict = NewDebit | ReplayStored | ReplayInBatch | DomainError


def plan_debits(
    commands: Sequence[DebitCommand],
    used: Mapping[str, KeyUse],
    voided: Collection[str],
    balances: Mapping[str, int],
    lots: Mapping[str, Sequence[SpendableLot]],
) -> list[DebitVerdict]:
    """Judge a batch of debits of one asset in order, each as if it came alone after the ones
    before it.

    `used`: the journal keys already in the journal, with what they were used for; `voided`:
    the journal keys a refund voided before their debit arrived; `balances` and `lots`: the
    spendable balance and lots of each account (an account that does not exist has neither).
    A key used before (in the journal or earlier in the batch) replays that debit when the
    parameters match and is refused as idempotency_key_reused otherwise; a voided key is
    refused (debit_voided); a debit larger than the balance is refused (insufficient_points);
    anything else is a new debit, earliest-expiring lots first. A refused command changes
    nothing for the ones after it. The arguments are not changed.
    """
    balance_now = dict(balances)
    lots_now: dict[str, Sequence[SpendableLot]] = {}
    debited: dict[str, int] = {}  # journal key -> index of the command that debits it
    verdicts: list[DebitVerdict] = []
    for i, c in enumerate(commands):
        key = c.journal_key
        previous = used.get(key)
        if previous is None and key in debited:
            first = commands[debited[key]]
            previous = KeyUse("debit", first.user_id, first.points)
        if previous is not None:
            refusal = key_reuse(key, previous, KeyUse("debit", c.user_id, c.points))
            if refusal is not None:
                verdicts.append(refusal)
            elif key in used:
                verdicts.append(ReplayStored())
            else:
                verdicts.append(ReplayInBatch(debited[key]))
            continue
        if key in voided:
            verdicts.append(DebitVoided(c.idempotency_key))
            continue
        balance = balance_now.get(c.user_id, 0)
        if balance < c.points:
            verdicts.append(InsufficientPoints(balance, c.points))
            continue
        user_lots = lots_now[c.user_id] if c.user_id in lots_now else lots.get(c.user_id, ())
        taken = allocate(user_lots, c.points)
        lots_now[c.user_id] = after_taking(user_lots, taken)
        balance_now[c.user_id] = balance - c.points
        debited[key] = i
        verdicts.append(NewDebit(balance - c.points, taken))
    return verdicts


# --- refunds and voids -------------------------------------------------------------------------

RefundStep = Literal["replay_refund", "replay_void", "void", "refund"]


def refund_step(
    user_id: str,
    debit_idempotency_key: str,
    refunded_by: str | None,
    voided_by: str | None,
    debited_by: str | None,
) -> RefundStep:
    """What a refund of the debit made with `debit_idempotency_key` does, given who (if
    anyone) already refunded it, voided its key, and made it, looked at in that order:

    - refunded before: replay that refund;
    - key voided before: replay that void;
    - no such debit: void the key (the debit is refused if it arrives later);
    - else refund the debit.

    Another user's refund, void or debit under that key is a 404 (not_found), as if the
    debit did not exist, so keys of other users are not revealed.
    """
    steps: tuple[tuple[str | None, RefundStep], ...] = (
        (refunded_by, "replay_refund"),
        (voided_by, "replay_void"),
        (debited_by, "refund"),
    )
    for owner, step in steps:
        if owner is not None:
            if owner != user_id:
                raise NotFound("debit", debit_idempotency_key)
            return step
    return "void"


@dataclass(frozen=True)
class Restoration:
    """Where a refund's points go, in the order the debit took them."""

    to_lots: list[tuple[str, int]]  # back into lots still live (keeping their expiry)
    expiring: list[tuple[str, int]]  # back to lots expired since: refunded, and expired at once

    @property
    def expired_points(self) -> int:
        return sum(pts for _, pts in self.expiring)

    @property
    def lapsed_lots(self) -> list[str]:
        """The lots to close as expired (sorted)."""
        return sorted({lot_id for lot_id, _ in self.expiring})


def restore(
    taken: Sequence[tuple[str, int]], expiry: Mapping[str, datetime | None], now: datetime
) -> Restoration:
    """A refund gives every point back to the lot the debit took it from (`taken`). A refund
    never extends a lot's life: points of a lot whose expiry (`expiry[lot_id]`) has passed by
    `now` are refunded and expire at once."""
    to_lots: list[tuple[str, int]] = []
    expiring: list[tuple[str, int]] = []
    for lot_id, pts in taken:
        (expiring if is_due(expiry[lot_id], now) else to_lots).append((lot_id, pts))
    return Restoration(to_lots, expiring)


def refund_moves(user_id: str, refunded: int, restoration: Restoration) -> list[tuple[str, int]]:
    """A refund's balance moves: the refund itself, then one expiry per lapsed allocation."""
    return [(user_id, refunded)] + [(user_id, -pts) for _, pts in restoration.expiring]


# --- clawbacks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrantedLot:
    """The lot a grant created, as a clawback finds it."""

    id: str
    status: str  # pending | active | expired | cancelled
    remaining: int


@dataclass(frozen=True)
class ClawbackPlan:
    """How `amount` is taken back: the grant's pending lot cancelled first, or else its own
    available lot; then other available lots of the account, earliest-expiring first; what
    is left was spent and becomes debt (the balance never goes negative)."""

    cancelled: int  # pending points of the grant's own lot, never made available
    taken: list[tuple[str, int]]  # (lot_id, points) of available points taken back, in order
    debt: int

    @property
    def taken_total(self) -> int:
        return sum(pts for _, pts in self.taken)


def plan_clawback(amount: int, own: GrantedLot, others: Sequence[SpendableLot]) -> ClawbackPlan:
    """Take back `amount` of what the lot `own` was granted (`others`: the account's other
    spendable lots; `own` is left out of them)."""
    if amount <= 0:
        raise ValueError("amount must be positive")
    cancelled = min(amount, own.remaining) if own.status == "pending" else 0
    left = amount - cancelled
    taken: list[tuple[str, int]] = []
    if own.status == "active" and own.remaining > 0 and left > 0:
        taken.append((own.id, min(left, own.remaining)))
        left -= taken[-1][1]
    if left > 0:
        spare = [lot for lot in others if lot.id != own.id and lot.remaining > 0]
        available = sum(lot.remaining for lot in spare)
        if available > 0:
            taken += allocate(spare, min(left, available))
            left -= min(left, available)
    return ClawbackPlan(cancelled, taken, left)


# --- extensions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtendableLot:
    id: str
    remaining: int
    expires_at: datetime | None
    created_at: datetime
    extended: bool  # a lot is extended at most once


@dataclass(frozen=True)
class ExtensionPlan:
    extended: list[tuple[str, datetime, datetime]]  # (lot_id, old expiry, new expiry)
    points: int  # what the extended lots hold
    fee: int
    fee_taken: list[tuple[str, int]]  # (lot_id, points) the fee came from


def extension_fee(points: int, percent: float, minimum: int) -> int:
    """The fee for extending `points`: `percent` of them rounded up, at least `minimum`."""
    return max(minimum, ceil(points * percent / 100))


def plan_extension(
    lots: Sequence[ExtendableLot],
    now: datetime,
    window_days: int,
    days: int,
    fee_percent: float,
    fee_minimum: int,
) -> ExtensionPlan:
    """Extend by `days` every lot expiring within `window_days` of `now` that was never
    extended; the fee is paid from the other lots, earliest-expiring first. Raises
    NothingToExtend, or InsufficientPoints when the other lots cannot pay the fee."""
    horizon = now + timedelta(days=window_days)
    chosen = [
        lot
        for lot in lots
        if lot.remaining > 0
        and not lot.extended
        and lot.expires_at is not None
        and now < lot.expires_at <= horizon
    ]
    if not chosen:
        raise NothingToExtend(window_days)
    points = sum(lot.remaining for lot in chosen)
    fee = extension_fee(points, fee_percent, fee_minimum)
    ids = {lot.id for lot in chosen}
    payers = [
        SpendableLot(lot.id, lot.remaining, lot.expires_at, lot.created_at)
        for lot in lots
        if lot.id not in ids and lot.remaining > 0
    ]
    fee_taken = allocate(payers, fee)
    extended = [
        (lot.id, lot.expires_at, lot.expires_at + timedelta(days=days))
        for lot in sorted(chosen, key=lambda lot: (lot.expires_at, lot.id))
        if lot.expires_at is not None
    ]
    return ExtensionPlan(extended, points, fee, fee_taken)
