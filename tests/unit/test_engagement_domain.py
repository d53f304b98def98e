"""engagement's pure rules: what counts as earned, periods by business timezone, display
ranks and percentiles, prize order, tiers and badge progress."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.engagement import domain
from services.engagement.domain import Ladder, Prize, Standing, Tier, UserStats
from shared.events import LedgerEvent

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ledger(type_: str, points: int, pending: int = 0, debt: int = 0) -> LedgerEvent:
    return LedgerEvent(
        type=type_,  # type: ignore[arg-type]
        entry_id=1,
        user_id="u",
        points=points,
        pending=pending,
        debt=debt,
        balance_after=0,
        idempotency_key="k",
        occurred_at=T0,
    )


def test_earned_counts_credits_and_releases_and_never_spending() -> None:
    assert domain.earned_delta(ledger("credited", 50)) == 50
    assert domain.earned_delta(ledger("adjusted", 20)) == 20
    assert domain.earned_delta(ledger("released", 30, pending=-30)) == 30
    assert domain.earned_delta(ledger("pending", 0, pending=30)) == 0  # counted at release
    for spent in ("debited", "refunded", "expired", "debt_repaid", "extended"):
        assert domain.earned_delta(ledger(spent, -40)) == 0  # redeeming costs no rank


def test_a_clawback_lowers_earned_by_what_it_took_and_the_debt_but_not_the_pending_part() -> None:
    assert domain.earned_delta(ledger("clawed_back", -30, pending=-20, debt=10)) == -40


def test_periods_roll_at_midnight_in_the_business_timezone() -> None:
    before = datetime(2026, 3, 1, 15, 59, tzinfo=UTC)  # 23:59 on 1 March in Shanghai
    after = before + timedelta(minutes=2)  # 00:01 on 2 March in Shanghai
    assert domain.period_key("day", before, SHANGHAI) == "2026-03-01"
    assert domain.period_key("day", after, SHANGHAI) == "2026-03-02"
    # Sunday 23:59 -> Monday 00:01 in Shanghai changes the ISO week; in UTC it is still Sunday
    sunday = datetime(2026, 3, 8, 15, 59, tzinfo=UTC)
    assert domain.period_key("week", sunday, SHANGHAI) == "2026-W10"
    assert domain.period_key("week", sunday + timedelta(minutes=2), SHANGHAI) == "2026-W11"
    month_end = datetime(2026, 3, 31, 15, 59, tzinfo=UTC)
    assert domain.period_key("month", month_end, SHANGHAI) == "2026-03"
    assert domain.period_key("month", month_end + timedelta(minutes=2), SHANGHAI) == "2026-04"
    assert domain.period_key("all_time", month_end, SHANGHAI) == "all"


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)),
    st.sampled_from(["day", "week", "month"]),
)
def test_every_instant_falls_inside_its_period_bounds(naive: datetime, window: str) -> None:
    at = naive.replace(tzinfo=UTC)
    key = domain.period_key(window, at, SHANGHAI)
    bounds = domain.period_bounds(window, key, SHANGHAI)
    assert bounds is not None
    start, end = bounds
    assert start <= at < end
    assert domain.period_key(window, end, SHANGHAI) != key


def test_bad_period_keys_are_refused() -> None:
    for window, key in (
        ("day", "2026-W10"),
        ("week", "2026-03"),
        ("month", "x"),
        ("all_time", "2026"),
    ):
        with pytest.raises(ValueError):
            domain.period_bounds(window, key, SHANGHAI)


def test_ties_share_a_rank_and_the_next_rank_skips() -> None:
    assert domain.display_ranks([90, 80, 80, 70]) == [1, 2, 2, 4]
    assert domain.display_ranks([80, 80, 70], first_position=5, first_rank=3) == [3, 3, 7]


@given(st.lists(st.integers(min_value=0, max_value=50), max_size=60))
def test_a_rank_is_one_plus_the_number_of_higher_scores(scores: list[int]) -> None:
    ordered = sorted(scores, reverse=True)
    assert domain.display_ranks(ordered) == [1 + sum(s > x for s in ordered) for x in ordered]


@given(st.integers(min_value=1, max_value=10**6), st.data())
def test_percentile_is_between_1_and_100_and_the_leader_is_never_0(total: int, data) -> None:
    rank = data.draw(st.integers(min_value=1, max_value=total))
    pct = domain.percentile(rank, total)
    assert 1 <= pct <= 100
    assert domain.percentile(1, total) == max(1, -(-100 // total))
    assert domain.percentile(total, total) == 100


def test_prizes_break_ties_by_who_reached_the_score_first() -> None:
    prizes = [Prize(1, 1, "points", 100), Prize(2, 3, "points", 10)]
    standings = [
        Standing("late", 50, T0 + timedelta(hours=2)),
        Standing("early", 50, T0 + timedelta(hours=1)),
        Standing("third", 40, T0),
        Standing("fourth", 30, T0),
    ]
    placed = domain.final_standings(standings, prizes)
    assert [(p.user_id, p.rank, p.position) for p in placed] == [
        ("early", 1, 1),
        ("late", 1, 2),
        ("third", 3, 3),
        ("fourth", 4, 4),
    ]
    assert [p.prize.amount if p.prize else None for p in placed] == [100, 10, 10, None]


def test_prize_grant_ids_are_the_same_every_time() -> None:
    assert domain.prize_grant_id("b", "2026-03", "u") == domain.prize_grant_id("b", "2026-03", "u")
    assert domain.prize_grant_id("b", "2026-03", "u") != domain.prize_grant_id("b", "2026-04", "u")


LADDER = Ladder(
    (
        Tier("member", "Member", 0, 1.0),
        Tier("silver", "Silver", 100, 1.2),
        Tier("gold", "Gold", 500, 1.5),
    )
)


def test_upgrades_are_immediate_and_never_down() -> None:
    assert domain.upgrade(LADDER, "member", 120) == LADDER.tiers[1]
    assert domain.upgrade(LADDER, "member", 600) == LADDER.tiers[2]  # straight to gold
    assert domain.upgrade(LADDER, "gold", 10) is None  # lowering waits for the term's end
    assert domain.upgrade(LADDER, "silver", 150) is None


def test_the_end_of_a_term_keeps_lowers_or_raises() -> None:
    assert domain.evaluate(LADDER, "gold", 700).direction == "same"
    lowered = domain.evaluate(LADDER, "gold", 150)
    assert lowered.direction == "down" and lowered.tier == LADDER.tiers[1]
    assert domain.evaluate(LADDER, "silver", 600).direction == "up"


def test_a_ladder_must_climb() -> None:
    assert domain.validate_ladder(list(LADDER.tiers)) is None
    assert domain.validate_ladder([LADDER.tiers[1], LADDER.tiers[0]]) is not None
    assert domain.validate_ladder([LADDER.tiers[0], LADDER.tiers[0]]) is not None
    assert LADDER.level("gold") == 3 and LADDER.level(None) == 0
    assert LADDER.above(LADDER.tiers[2]) is None and LADDER.above(None) == LADDER.tiers[0]


def test_badge_progress_for_each_kind_of_criteria() -> None:
    stats = UserStats(
        actions={"share": 3},
        recent={("share", 7): 2},
        earned={"points": 900},
        best_streak=5,
        redemptions=1,
    )
    assert domain.badge_progress({"type": "first_action", "action": "share"}, stats) == (1, 1)
    assert domain.badge_progress({"type": "first_action", "action": "buy"}, stats) == (0, 1)
    assert domain.badge_progress(
        {"type": "action_count", "action": "share", "count": 5}, stats
    ) == (
        3,
        5,
    )
    windowed = {"type": "action_count", "action": "share", "count": 2, "within_days": 7}
    assert domain.badge_earned(windowed, stats)
    assert domain.badge_earned({"type": "streak", "days": 5}, stats)
    assert not domain.badge_earned(
        {"type": "total_earned", "asset": "points", "amount": 1000}, stats
    )
    assert domain.badge_earned({"type": "redemptions", "count": 1}, stats)
