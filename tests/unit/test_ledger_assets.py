"""Pure rules of clawbacks and paid extensions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.rewards_ledger.domain import (
    ExtendableLot,
    GrantedLot,
    InsufficientPoints,
    NothingToExtend,
    SpendableLot,
    extension_fee,
    lot_id_for,
    plan_clawback,
    plan_extension,
)

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def _lot(lot_id: str, remaining: int, days: int | None) -> SpendableLot:
    expires = None if days is None else NOW + timedelta(days=days)
    return SpendableLot(lot_id, remaining, expires, NOW)


def test_a_pending_lot_is_cancelled_and_nothing_else_is_touched() -> None:
    plan = plan_clawback(30, GrantedLot("own", "pending", 50), [_lot("other", 100, 5)])
    assert (plan.cancelled, plan.taken, plan.debt) == (30, [], 0)


def test_an_available_lot_is_taken_back_from_itself_first() -> None:
    plan = plan_clawback(30, GrantedLot("own", "active", 50), [_lot("other", 100, 5)])
    assert (plan.cancelled, plan.taken, plan.debt) == (0, [("own", 30)], 0)


def test_what_was_spent_comes_from_other_lots_earliest_first_then_becomes_debt() -> None:
    others = [_lot("late", 5, 90), _lot("soon", 10, 3), _lot("own", 20, 1)]
    plan = plan_clawback(40, GrantedLot("own", "active", 20), others)
    # the own lot first (its 20), then the other lots by expiry (10, 5); 5 was spent: debt
    assert plan.taken == [("own", 20), ("soon", 10), ("late", 5)]
    assert plan.debt == 5 and plan.taken_total == 35


def test_an_expired_or_emptied_grant_lot_is_recovered_from_the_rest() -> None:
    plan = plan_clawback(10, GrantedLot("own", "expired", 0), [])
    assert (plan.cancelled, plan.taken, plan.debt) == (0, [], 10)


@given(
    amount=st.integers(1, 500),
    own_status=st.sampled_from(["pending", "active", "expired", "cancelled"]),
    own_left=st.integers(0, 300),
    others=st.lists(st.integers(0, 100), max_size=5),
)
def test_a_clawback_takes_exactly_the_amount_and_never_more_than_a_lot_holds(
    amount: int, own_status: str, own_left: int, others: list[int]
) -> None:
    lots = [_lot(f"o{i}", r, i + 1) for i, r in enumerate(others)]
    plan = plan_clawback(amount, GrantedLot("own", own_status, own_left), lots)
    assert plan.cancelled + plan.taken_total + plan.debt == amount
    holds = {lot.id: lot.remaining for lot in lots} | {"own": own_left}
    assert all(0 < pts <= holds[lot_id] for lot_id, pts in plan.taken)
    assert plan.debt == 0 or plan.taken_total == sum(r for r in others) + (
        own_left if own_status == "active" else 0
    )


def _ext(lot_id: str, remaining: int, days: int | None, extended: bool = False) -> ExtendableLot:
    expires = None if days is None else NOW + timedelta(days=days)
    return ExtendableLot(lot_id, remaining, expires, NOW, extended)


def test_extension_moves_the_lots_expiring_soon_and_the_fee_comes_from_the_others() -> None:
    lots = [_ext("soon", 200, 10), _ext("later", 100, 200), _ext("never", 50, None)]
    plan = plan_extension(lots, NOW, window_days=30, days=90, fee_percent=10, fee_minimum=1)
    assert plan.extended == [("soon", NOW + timedelta(days=10), NOW + timedelta(days=100))]
    assert (plan.points, plan.fee) == (200, 20)
    assert plan.fee_taken == [("later", 20)]  # the lots being extended do not pay


def test_a_lot_is_extended_once_and_an_empty_window_is_refused() -> None:
    with pytest.raises(NothingToExtend):
        plan_extension(
            [_ext("soon", 200, 10, extended=True), _ext("later", 100, 200)], NOW, 30, 90, 10, 1
        )
    with pytest.raises(NothingToExtend):
        plan_extension([_ext("later", 100, 200)], NOW, 30, 90, 10, 1)


def test_extension_without_other_points_to_pay_is_insufficient_points() -> None:
    with pytest.raises(InsufficientPoints) as refused:
        plan_extension([_ext("soon", 200, 10), _ext("later", 5, 200)], NOW, 30, 90, 10, 1)
    assert refused.value.details == {"balance": 5, "requested": 20}


@pytest.mark.parametrize(
    ("points", "percent", "minimum", "fee"),
    [(200, 10, 1, 20), (5, 10, 1, 1), (15, 10, 1, 2), (100, 0, 3, 3)],
)
def test_the_fee_is_a_share_rounded_up_with_a_floor(points, percent, minimum, fee) -> None:
    assert extension_fee(points, percent, minimum) == fee


def test_points_lots_keep_their_ids_and_other_assets_get_their_own() -> None:
    assert lot_id_for("grant:g1", "points") != lot_id_for("grant:g1", "balloon")
    assert lot_id_for("adjust:k", "balloon") != lot_id_for("adjust:k", "beans")
