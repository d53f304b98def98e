"""Refunds, voids and clawbacks: what a refund does and where its points go; clawbacks with
debt."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.rewards_ledger.domain.lots import SpendableLot, allocate, is_due
from shared.errors import NotFound

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
