"""Refunds: what a refunded order's grants give back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.events import stable_id


def order_behavior_id(source: str, order_no: str) -> str:
    """The behavior id of an order's `order_paid` (the sensor's id of (source, event_id))."""
    return stable_id("behavior", source, order_no)


def refunded_total(paid_cents: int, refunds_cents: Sequence[int]) -> int:
    """How much of an order is refunded in all: the sum of its refunds, never above paid."""
    return min(paid_cents, sum(refunds_cents))


def clawed_total(grant_points: int, paid_cents: int, refunds_cents: Sequence[int]) -> int:
    """How much of a grant an order's refunds take back in all: the refunded share of its
    points, rounded down so that no one loses more than the order earned. A full refund takes
    everything, also from an order paid with nothing."""
    if not refunds_cents:
        return 0
    refunded = refunded_total(paid_cents, refunds_cents)
    if refunded >= paid_cents:
        return grant_points
    return grant_points * refunded // paid_cents


def yuan(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


@dataclass(frozen=True)
class Clawback:
    grant_id: str
    asset: str
    clawed_total: int

    @property
    def clawback_id(self) -> str:
        # The same cumulative total always has the same id: recomputing it emits a duplicate.
        return stable_id("clawback", self.grant_id, self.clawed_total)


@dataclass(frozen=True)
class OrderGrant:
    grant_id: str
    asset: str
    points: int


def clawbacks(
    grants: Sequence[OrderGrant], paid_cents: int, refunds_cents: Sequence[int]
) -> list[Clawback]:
    """The cumulative clawback of every grant an order caused that its refunds touch."""
    found = [
        Clawback(g.grant_id, g.asset, clawed_total(g.points, paid_cents, refunds_cents))
        for g in grants
    ]
    return [c for c in found if c.clawed_total > 0]
