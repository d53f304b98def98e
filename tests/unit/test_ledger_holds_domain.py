"""The pure rules of holds: which step a capture or void takes, and where a closing hold's
points go (captured earliest-expiring first, the rest back, or expired when their lot was)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.rewards_ledger.domain import (
    CaptureExceedsHold,
    HoldExpired,
    IdempotencyKeyReused,
    InvalidTransition,
    SpendableLot,
    settle,
    settle_step,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Hold:
    id: str = "h"
    user_id: str = "u"
    points: int = 100
    status: str = "open"
    captured: int = 0
    settle_key: str | None = None
    closed_by: str | None = None
    expires_at: datetime = T0 + timedelta(hours=1)


CAPTURED = Hold(status="captured", captured=60, settle_key="pay", closed_by="capture")
VOIDED = Hold(status="voided", settle_key="cancel", closed_by="void")
SWEPT = Hold(status="voided", closed_by="deadline")


@pytest.mark.parametrize(
    ("hold", "action", "key", "points", "now", "expected"),
    [
        (Hold(), "capture", "pay", 100, T0, "apply"),
        (Hold(), "capture", "pay", 40, T0, "apply"),
        (Hold(), "void", "cancel", 0, T0, "apply"),
        (Hold(), "void", "cancel", 0, T0 + timedelta(days=1), "apply"),  # past the deadline too
        (CAPTURED, "capture", "pay", 60, T0, "replay"),
        (VOIDED, "void", "cancel", 0, T0, "replay"),
        (VOIDED, "void", "again", 0, T0, "replay"),  # released already, whatever the key
        (SWEPT, "void", "cancel", 0, T0, "replay"),
        (CAPTURED, "capture", "pay", 59, T0, IdempotencyKeyReused),
        (CAPTURED, "void", "pay", 0, T0, IdempotencyKeyReused),
        (VOIDED, "capture", "cancel", 100, T0, IdempotencyKeyReused),
        (CAPTURED, "capture", "other", 60, T0, InvalidTransition),
        (CAPTURED, "void", "cancel", 0, T0, InvalidTransition),
        (VOIDED, "capture", "pay", 100, T0, InvalidTransition),
        (SWEPT, "capture", "pay", 100, T0, InvalidTransition),
        (Hold(), "capture", "pay", 101, T0, CaptureExceedsHold),
        (Hold(), "capture", "pay", 100, T0 + timedelta(hours=1), HoldExpired),
    ],
)
def test_settle_step(hold, action, key, points, now, expected) -> None:
    if isinstance(expected, str):
        assert settle_step(hold, action, key, points, now) == expected
    else:
        with pytest.raises(expected):
            settle_step(hold, action, key, points, now)


def _lot(i: int, held: int, days: int | None) -> SpendableLot:
    expires = None if days is None else T0 + timedelta(days=days)
    return SpendableLot(f"lot{i:02d}", held, expires, T0 - timedelta(days=400 - i))


def test_a_capture_takes_the_earliest_expiring_held_points_and_lets_the_rest_go() -> None:
    held = [_lot(1, 30, None), _lot(2, 50, 10), _lot(3, 20, -1)]  # lot03 expired while held
    expiry = {lot.id: lot.expires_at for lot in held}

    plan = settle(held, 60, expiry, T0)

    assert plan.captured == [("lot03", 20), ("lot02", 40)]
    assert plan.released.to_lots == [("lot01", 30), ("lot02", 10)]
    assert plan.released.expiring == []
    assert plan.lot_moves == [("lot01", 30, 0), ("lot02", 50, 40), ("lot03", 20, 20)]


def test_a_void_lets_everything_go_and_what_expired_meanwhile_expires() -> None:
    held = [_lot(1, 30, 5), _lot(2, 50, -2)]
    plan = settle(held, 0, {lot.id: lot.expires_at for lot in held}, T0)

    assert plan.captured == []
    assert plan.released.to_lots == [("lot01", 30)]
    assert plan.released.expiring == [("lot02", 50)]
    assert plan.expired_points == 50
    assert plan.lot_moves == [("lot01", 30, 0), ("lot02", 50, 50)]


@given(
    st.lists(
        st.tuples(st.integers(1, 500), st.one_of(st.none(), st.integers(-30, 30))),
        min_size=1,
        max_size=8,
    ),
    st.data(),
)
def test_a_closing_hold_accounts_for_every_point_it_held(lots, data) -> None:
    held = [_lot(i, pts, days) for i, (pts, days) in enumerate(lots)]
    total = sum(lot.remaining for lot in held)
    captured = data.draw(st.integers(0, total))
    expiry = {lot.id: lot.expires_at for lot in held}

    plan = settle(held, captured, expiry, T0)

    assert sum(p for _, p in plan.captured) == captured
    back = sum(p for _, p in plan.released.to_lots) + plan.expired_points
    assert captured + back == total
    assert {lot for lot, _ in plan.released.expiring} <= {
        lot.id for lot in held if lot.expires_at is not None and lot.expires_at <= T0
    }
    moves = {lot: (unheld, taken) for lot, unheld, taken in plan.lot_moves}
    assert all(moves[lot.id][0] == lot.remaining for lot in held)  # each lot fully unheld
    assert sum(taken for _, taken in moves.values()) == captured + plan.expired_points
