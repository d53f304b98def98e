"""Pure rules of check-ins: the ladder, streaks, bridged gaps paying only new steps."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.task_progress.domain import (
    DayBook,
    Ladder,
    LadderStep,
    current_streak,
)

WEEK = Ladder(
    (LadderStep(1, 5), LadderStep(2, 5), LadderStep(3, 10), LadderStep(7, 30)), cycle_days=7
)
D = date(2026, 11, 1)


def day(n: int) -> date:
    return D + timedelta(days=n - 1)


def paid_by(book: DayBook, days: list[int], kind: str = "normal") -> int:
    total = 0
    for n in days:
        plan = book.check_in(WEEK, day(n), kind)
        total += sum(c.grant for c in plan.changes) if plan else 0
    return total


def test_seven_days_in_a_row_pay_the_ladder_with_the_day_seven_bonus() -> None:
    assert paid_by(DayBook(), [1, 2, 3, 4, 5, 6, 7]) == 5 + 5 + 10 + 10 + 10 + 10 + 30


@pytest.mark.parametrize(("after_cycle", "day_eight"), [("restart", 5), ("hold", 30)])
def test_after_the_cycle_the_ladder_restarts_or_holds(after_cycle: str, day_eight: int) -> None:
    ladder = Ladder(WEEK.steps, cycle_days=7, after_cycle=after_cycle)
    assert ladder.amount(8) == day_eight and ladder.amount(7) == 30 and ladder.amount(4) == 10


def test_a_gap_resets_the_streak_and_says_what_broke() -> None:
    book = DayBook()
    paid_by(book, [1, 2, 3])
    plan = book.check_in(WEEK, day(5), "normal")
    assert plan is not None
    assert plan.changes[0].streak == 1 and plan.changes[0].grant == 5
    assert plan.broken == (3, day(3))


def test_the_same_day_twice_pays_nothing_more() -> None:
    book = DayBook()
    assert paid_by(book, [1, 1, 1]) == 5


def test_a_makeup_bridges_the_gap_and_pays_only_the_new_steps() -> None:
    book = DayBook()
    before = paid_by(book, [1, 3, 4])  # 5 | 5 + 5
    plan = book.check_in(WEEK, day(2), "makeup")
    assert plan is not None
    # day 2 -> step 2 (5); day 3 -> step 3 (10, had 5); day 4 -> step 4 (10, had 5)
    assert [(c.day, c.streak, c.grant) for c in plan.changes] == [
        (day(2), 2, 5),
        (day(3), 3, 5),
        (day(4), 4, 5),
    ]
    assert before + sum(c.grant for c in plan.changes) == paid_by(DayBook(), [1, 2, 3, 4])
    assert book.check_in(WEEK, day(2), "makeup") is None  # a replay pays nothing


@given(st.lists(st.integers(1, 40), min_size=1, max_size=60))
def test_in_any_order_the_days_pay_at_least_what_they_are_worth_in_the_end(
    order: list[int],
) -> None:
    book = DayBook()
    total = paid_by(book, order)
    final = paid_by(DayBook(), sorted(set(order)))  # the same days, in order, once each
    assert total >= final  # a longer streak never takes back; a bridge pays the difference
    assert total == sum(d.paid for d in book.days.values())
    streaks = {d: book.days[d].streak for d in book.days}
    for d in book.days:
        previous = d - timedelta(days=1)
        assert streaks[d] == (streaks[previous] + 1 if previous in streaks else 1)


def test_the_current_streak_counts_from_today_or_else_yesterday() -> None:
    days = {day(1): 1, day(2): 2, day(3): 3}
    assert current_streak(days, day(3)) == 3
    assert current_streak(days, day(4)) == 3  # not checked in yet today
    assert current_streak(days, day(5)) == 0


def test_points_follow_the_tier_held_when_the_behavior_happened() -> None:
    from datetime import UTC, datetime

    from services.task_progress.domain import TierBook, multiplied

    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    book = TierBook()
    book.add("ann", t0 + timedelta(days=10), 2, 2.0)
    book.add("ann", t0, 1, 1.5)  # learned out of order
    assert book.multiplier("ann", t0 - timedelta(seconds=1)) == 1.0
    assert book.multiplier("ann", t0 + timedelta(days=1)) == 1.5
    assert book.multiplier("ann", t0 + timedelta(days=10)) == 2.0
    assert book.multiplier("bob", t0) == 1.0
    assert [multiplied(p, 1.5) for p in (1, 3, 10)] == [1, 4, 15]  # rounded down, at least 1


def test_behaviors_are_counted_by_business_day_across_midnight() -> None:
    from collections import namedtuple
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from services.task_progress.simulate import Tally, count_by_day

    row = namedtuple("row", "occurred_at")
    tz = ZoneInfo("Asia/Shanghai")
    local_midnight = datetime(2026, 11, 2, tzinfo=tz)
    times = [local_midnight + timedelta(minutes=m) for m in (-61, -1, 0, 1, 60 * 24 + 5)]
    days: dict = {}
    count_by_day([row(t.astimezone(UTC)) for t in times], tz, days)
    assert {d: t.behaviors for d, t in days.items()} == {
        date(2026, 11, 1): 2,
        date(2026, 11, 2): 2,
        date(2026, 11, 3): 1,
    }
    assert all(isinstance(t, Tally) for t in days.values())
