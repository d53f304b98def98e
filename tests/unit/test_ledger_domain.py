from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.rewards_ledger.domain import InsufficientPoints, SpendableLot, allocate

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def lot(i: int, remaining: int, days: int | None) -> SpendableLot:
    return SpendableLot(
        f"lot{i}", remaining, NOW + timedelta(days=days) if days is not None else None, NOW
    )


def test_earliest_expiry_first_and_never_expiring_last() -> None:
    lots = [lot(1, 50, 30), lot(2, 30, 5), lot(3, 100, None), lot(4, 20, 60)]
    assert allocate(lots, 40) == [("lot2", 30), ("lot1", 10)]
    assert allocate(lots, 110) == [("lot2", 30), ("lot1", 50), ("lot4", 20), ("lot3", 10)]


def test_insufficient_points_is_a_409_with_a_stable_code() -> None:
    with pytest.raises(InsufficientPoints) as info:
        allocate([lot(1, 5, 1)], 6)
    assert (info.value.code, info.value.status) == ("insufficient_points", 409)


@given(
    st.lists(
        st.tuples(st.integers(0, 1000), st.one_of(st.none(), st.integers(-5, 400))), max_size=30
    ),
    st.integers(1, 5000),
)
def test_allocation_takes_exactly_the_points_and_respects_each_lot(spec, points) -> None:
    lots = [lot(i, r, d) for i, (r, d) in enumerate(spec)]
    available = sum(lt.remaining for lt in lots)
    if available < points:
        with pytest.raises(InsufficientPoints):
            allocate(lots, points)
        return
    taken = allocate(lots, points)
    by_id = {lt.id: lt for lt in lots}
    assert sum(p for _, p in taken) == points
    assert all(0 < p <= by_id[i].remaining for i, p in taken)
    # Only the last lot touched may be partly used: earlier ones are emptied first.
    assert all(p == by_id[i].remaining for i, p in taken[:-1])
