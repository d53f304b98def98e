"""Pure ledger rules: lot ordering, allocation of a debit across lots, expiry dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.errors import DomainError


class InsufficientPoints(DomainError):
    def __init__(self, balance: int, requested: int) -> None:
        super().__init__(
            "insufficient_points",
            f"balance {balance} is less than the {requested} points requested",
            balance=balance,
            requested=requested,
        )


@dataclass(frozen=True)
class SpendableLot:
    id: str
    remaining: int
    expires_at: datetime | None
    created_at: datetime


def spending_order(lot: SpendableLot) -> tuple[bool, datetime, datetime, str]:
    """Earliest expiry first; lots that never expire last; ties by age, then id."""
    return (lot.expires_at is None, lot.expires_at or lot.created_at, lot.created_at, lot.id)


def allocate(lots: list[SpendableLot], points: int) -> list[tuple[str, int]]:
    """Split `points` over lots, earliest-expiring first. Returns (lot_id, points_taken) pairs."""
    if points <= 0:
        raise ValueError("points must be positive")
    available = sum(lot.remaining for lot in lots)
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


def expiry_for(occurred_at: datetime, validity_days: int) -> datetime:
    return occurred_at + timedelta(days=validity_days)
