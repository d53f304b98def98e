"""Paid extensions: the fee and which lots move."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from math import ceil

from services.rewards_ledger.domain.lots import SpendableLot, allocate
from services.rewards_ledger.domain.refusals import NothingToExtend

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
