"""Accounts, lots and balances: spending order, allocation across lots, expiry, the balance
after each entry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from services.rewards_ledger.domain.refusals import InsufficientPoints

# --- accounts ----------------------------------------------------------------------------------


@dataclass
class Totals:
    """What an account holds: its balance (the points in its active lots), pending, debt, and
    the part of the balance open holds reserve (held)."""

    balance: int = 0
    pending: int = 0
    debt: int = 0
    held: int = 0

    @property
    def available(self) -> int:
        """What can be spent or held now: the balance less what open holds reserve."""
        return self.balance - self.held


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
