"""Holds (积分抵现 at checkout): whether a placement, a capture or a void is new, a replay or a
refusal, and where a capture's points come from and what it gives back.

A hold moves once, from open to captured or to voided, never both. A capture takes the held
points of the earliest-expiring lots first and releases the rest. Points a hold reserves do
not expire while it is open; released points whose lot expired meanwhile expire at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from services.rewards_ledger.domain.debits import KeyUse, key_reuse
from services.rewards_ledger.domain.keys import (
    DEFAULT_ASSET,
    Account,
    hold_id_for,
    hold_journal_key,
)
from services.rewards_ledger.domain.lots import SpendableLot, allocate
from services.rewards_ledger.domain.refunds import Restoration, restore
from services.rewards_ledger.domain.refusals import (
    CaptureExceedsHold,
    HoldExpired,
    IdempotencyKeyReused,
    InvalidTransition,
)

Settlement = Literal["capture", "void"]


@dataclass(frozen=True)
class HoldCommand:
    user_id: str
    points: int
    idempotency_key: str  # the caller's; the journal stores "hold:<key>"
    expires_at: datetime  # the deadline: voided by the sweeper unless captured before
    reference: str | None = None
    asset: str = DEFAULT_ASSET

    @property
    def hold_id(self) -> str:
        return hold_id_for(self.idempotency_key, self.asset)

    @property
    def journal_key(self) -> str:
        return hold_journal_key(self.idempotency_key)

    @property
    def account(self) -> Account:
        return (self.user_id, self.asset)


class HoldState(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def points(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def captured(self) -> int: ...
    @property
    def settle_key(self) -> str | None: ...
    @property
    def closed_by(self) -> str | None: ...
    @property
    def expires_at(self) -> datetime: ...


def placement_reuse(existing: HoldState, command: HoldCommand) -> IdempotencyKeyReused | None:
    """A hold key used again: None when it is a replay (same user and points: the deadline
    and reference of a retry are not compared), else the refusal."""
    return key_reuse(
        command.idempotency_key,
        KeyUse("hold", existing.user_id, existing.points),
        KeyUse("hold", command.user_id, command.points),
    )


def settle_step(
    hold: HoldState, action: Settlement, key: str, points: int, now: datetime
) -> Literal["apply", "replay"]:
    """What a capture (of `points`) or a void with the caller's `key` does to `hold`:

    - the key closed this hold before: a replay when it was the same action (and, for a
      capture, the same points), else idempotency_key_reused;
    - a closed hold: voiding a voided hold is a replay (whatever the key: it is released
      already); anything else is invalid_transition (captured and voided are final);
    - an open hold: a capture of more than it holds is refused (capture_exceeds_hold), as is
      a capture past the deadline (hold_expired: the sweeper voids it); else apply.
    """
    if hold.settle_key == key:
        if hold.closed_by == action and (action == "void" or hold.captured == points):
            return "replay"
        raise IdempotencyKeyReused(key, f"{hold.closed_by} of hold {hold.id}")
    if hold.status != "open":
        if action == "void" and hold.status == "voided":
            return "replay"
        raise InvalidTransition(hold.id, hold.status, action)
    if action == "capture":
        if points > hold.points:
            raise CaptureExceedsHold(hold.points, points)
        if hold.expires_at <= now:
            raise HoldExpired(hold.id, hold.expires_at.isoformat())
    return "apply"


@dataclass(frozen=True)
class Settling:
    """How a hold closes: what the debit takes from each lot (nothing for a void), what goes
    back to lots still live, what expires at once (lots that expired while held), and each
    lot's move: (lot_id, unheld, taken off remaining)."""

    captured: list[tuple[str, int]]
    released: Restoration
    lot_moves: list[tuple[str, int, int]]

    @property
    def expired_points(self) -> int:
        return self.released.expired_points


def settle(
    held: Sequence[SpendableLot], points: int, expiry: Mapping[str, datetime | None], now: datetime
) -> Settling:
    """Close a hold reserving `held` (remaining = what it holds of each lot) by capturing
    `points` (0: a void): earliest-expiring lots first; the rest is released, expiring at
    once where the lot's expiry (`expiry`) has passed by `now`."""
    captured = allocate(held, points) if points > 0 else []
    took = dict(captured)
    back = [(lot.id, lot.remaining - took.get(lot.id, 0)) for lot in held]
    released = restore([(lot, pts) for lot, pts in back if pts > 0], expiry, now)
    lapsed = dict(released.expiring)
    moves = [
        (lot.id, lot.remaining, took.get(lot.id, 0) + lapsed.get(lot.id, 0))
        for lot in sorted(held, key=lambda lot: lot.id)
    ]
    return Settling(captured, released, moves)
