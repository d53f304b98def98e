from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from services.task_progress.domain import (
    Condition,
    Progress,
    Rule,
    advance,
    period_end,
    period_key,
    status_of,
)

SH = ZoneInfo("Asia/Shanghai")


def test_period_keys_follow_the_business_timezone() -> None:
    late_utc = datetime(2026, 11, 22, 17, 30, tzinfo=UTC)  # 01:30 on the 23rd in Shanghai
    assert period_key("day", late_utc, SH) == "2026-11-23"
    assert period_key("day", late_utc, ZoneInfo("UTC")) == "2026-11-22"
    assert period_key("week", datetime(2026, 1, 1, tzinfo=SH), SH) == "2026-W01"
    assert period_key("month", late_utc, SH) == "2026-11"
    assert period_key("once", late_utc, SH) == "once"
    assert period_end("day", late_utc, SH) == datetime(2026, 11, 24, tzinfo=SH)
    assert period_end("lifetime", late_utc, SH) is None


def like_rule(**overrides) -> Rule:
    fields = {
        "id": "t1",
        "action": "like",
        "kind": "count",
        "reward_points": 1,
        "period": "day",
        "target_count": 3,
        "max_per_period": 20,
    }
    return Rule(**{**fields, **overrides})


def run(rule: Rule, n: int, attributes: dict | None = None) -> tuple[Progress, list]:
    progress, done = Progress(), []
    at = datetime(2026, 11, 22, tzinfo=SH)
    for _ in range(n):
        completion = advance(rule, progress, "u", "2026-11-22", at, attributes or {})
        if completion:
            done.append(completion)
    return progress, done


def test_three_likes_make_one_point_at_most_twenty_times() -> None:
    progress, done = run(like_rule(), 100)
    assert len(done) == 20 and sum(c.points for c in done) == 20
    assert progress.count == 100 and status_of(like_rule(), progress) == "completed"
    assert [c.number for c in done] == list(range(1, 21))
    assert len({c.grant_id for c in done}) == 20


@given(
    st.integers(min_value=0, max_value=300),
    st.integers(1, 10),
    st.one_of(st.none(), st.integers(1, 50)),
)
def test_completions_never_exceed_the_cap_or_the_count(
    n: int, target: int, cap: int | None
) -> None:
    rule = like_rule(target_count=target, max_per_period=cap)
    progress, done = run(rule, n)
    expected = n // target if cap is None else min(n // target, cap)
    assert len(done) == progress.completions == expected


def test_grant_ids_are_deterministic_so_replays_mint_nothing_new() -> None:
    _, first = run(like_rule(), 9)
    _, again = run(like_rule(), 9)
    assert [c.grant_id for c in first] == [c.grant_id for c in again]


def test_once_completes_a_single_time() -> None:
    _, done = run(like_rule(period="once", target_count=1, max_per_period=None), 5)
    assert len(done) == 1


def test_amount_ratio_pays_per_unit_spent() -> None:
    rule = Rule(
        id="r",
        action="order_paid",
        kind="amount_ratio",
        reward_points=1,
        period="lifetime",
        amount_unit_cents=1000,
    )
    _, done = run(rule, 1, {"amount_cents": 12900})
    assert [c.points for c in done] == [12]
    _, none = run(rule, 1, {"amount_cents": 999})
    assert none == []
    _, bad = run(rule, 1, {"amount_cents": "lots"})
    assert bad == []


def test_conditions_and_windows() -> None:
    at = datetime(2026, 11, 22, tzinfo=UTC)
    rule = like_rule(
        conditions=(Condition("length", ">=", 20),), starts_at=at, ends_at=at + timedelta(days=1)
    )
    assert rule.matches("like", at, {"length": 20})
    assert not rule.matches("like", at, {"length": 19})
    assert not rule.matches("like", at, {})
    assert not rule.matches("like", at, {"length": "twenty"})
    assert not rule.matches("like", at - timedelta(seconds=1), {"length": 25})
    assert not rule.matches("like", at + timedelta(days=1), {"length": 25})
    assert not rule.matches("comment", at, {"length": 25})
    assert Condition("tier", "in", ["gold", "vip"]).holds({"tier": "vip"})
    assert Condition("tier", "exists").holds({"tier": None})
    assert not Condition("flag", ">", 1).holds({"flag": True})
