"""Rules paying several assets, pending rewards, and what a refunded order takes back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.behavior_sensor.domain import behavior_id
from services.task_progress.domain import (
    OrderGrant,
    Progress,
    Reward,
    Rule,
    advance,
    clawbacks,
    clawed_total,
    order_behavior_id,
    refunded_total,
    yuan,
)
from services.task_progress.schemas import TaskCreate, TaskPatch
from shared.events import stable_id

AT = datetime(2026, 11, 22, 10, tzinfo=UTC)


def rule(**overrides) -> Rule:
    fields = {"id": "t1", "action": "checkin", "kind": "count", "reward_points": 10}
    return Rule(**{"period": "day", **fields, **overrides})


def test_a_completion_pays_its_main_reward_then_one_grant_per_extra_reward() -> None:
    r = rule(reward_type="points", extra_rewards=(Reward("growth", 10), Reward("balloon", 2)))
    done = advance(r, Progress(), "u", "2026-11-22", AT, {})
    assert done is not None
    main = stable_id("grant", "u", "t1", "2026-11-22", 1)
    assert [(p.grant_id, p.asset, p.points) for p in done.payouts()] == [
        (main, "points", 10),
        (stable_id("grant-extra", main, "growth"), "growth", 10),
        (stable_id("grant-extra", main, "balloon"), "balloon", 2),
    ]
    assert done.available_at is None


def test_pending_days_delay_availability_and_progress_counts_the_main_reward() -> None:
    r = rule(reward_type="growth", pending_days=7, extra_rewards=(Reward("points", 3),))
    progress = Progress()
    done = advance(r, progress, "u", "2026-11-22", AT, {})
    assert done is not None
    assert (done.asset, done.points, done.available_at) == ("growth", 10, AT + timedelta(days=7))
    assert progress.points == 10


def test_the_order_id_is_the_sensors_behavior_id() -> None:
    assert order_behavior_id("order_system", "O1") == behavior_id("order_system", "O1")


def test_refunds_accumulate_and_are_capped_at_what_was_paid() -> None:
    assert refunded_total(12900, []) == 0
    assert refunded_total(12900, [3000, 2000]) == 5000
    assert refunded_total(12900, [10000, 10000]) == 12900


def test_partial_refunds_take_back_the_refunded_share_rounded_down() -> None:
    assert clawed_total(12, 12900, [3000]) == 2  # 12 * 3000 / 12900 = 2.79
    assert clawed_total(12, 12900, [3000, 3000]) == 5  # cumulative: 12 * 6000 / 12900 = 5.58
    assert clawed_total(20, 12900, [1]) == 0  # too little to take anything back
    assert clawed_total(12, 12900, []) == 0


def test_a_full_refund_takes_back_everything_even_from_a_free_order() -> None:
    assert clawed_total(12, 12900, [12900]) == 12
    assert clawed_total(12, 12900, [12000, 5000]) == 12  # over-refund capped: still all
    assert clawed_total(50, 0, [0]) == 50


def test_clawbacks_skip_untouched_grants_and_keep_stable_ids() -> None:
    grants = [OrderGrant("g1", "points", 12), OrderGrant("g2", "growth", 1)]
    first = clawbacks(grants, 12900, [3000])
    assert [(c.grant_id, c.asset, c.clawed_total) for c in first] == [("g1", "points", 2)]
    # Recomputing the same refunds (a replay) gives the same totals, so the same ids.
    assert [c.clawback_id for c in clawbacks(grants, 12900, [3000])] == [
        c.clawback_id for c in first
    ]
    full = clawbacks(grants, 12900, [3000, 9900])
    assert [(c.grant_id, c.clawed_total) for c in full] == [("g1", 12), ("g2", 1)]
    assert full[0].clawback_id != first[0].clawback_id


@given(
    points=st.integers(1, 100_000),
    paid=st.integers(1, 10**9),
    refunds=st.lists(st.integers(0, 10**9), max_size=6),
)
def test_a_clawback_never_exceeds_the_grant_and_only_grows(
    points: int, paid: int, refunds: list[int]
) -> None:
    totals = [clawed_total(points, paid, refunds[:n]) for n in range(len(refunds) + 1)]
    assert all(0 <= t <= points for t in totals)
    assert totals == sorted(totals)
    if refunds and sum(refunds) >= paid:
        assert totals[-1] == points
    assert totals[-1] * paid <= points * refunded_total(paid, refunds)  # at most the share


def test_yuan_formats_cents() -> None:
    assert (yuan(12900), yuan(5), yuan(0)) == ("129.00", "0.05", "0.00")


BASE = {"name": "n", "action": "checkin", "reward_points": 10}


def test_rules_validate_their_extra_rewards() -> None:
    task = TaskCreate.model_validate(
        {**BASE, "extra_rewards": [{"reward_type": "growth", "amount": 10}], "pending_days": 7}
    )
    assert (task.reward_type, task.pending_days) == ("points", 7)
    for bad in (
        {"extra_rewards": [{"reward_type": "growth", "amount": 1}] * 2},  # named twice
        {"extra_rewards": [{"reward_type": "points", "amount": 1}]},  # same as the main one
        {"extra_rewards": [{"reward_type": f"a{i}", "amount": 1} for i in range(6)]},
        {"extra_rewards": [{"reward_type": "growth", "amount": 0}]},
        {"extra_rewards": [{"reward_type": "Growth", "amount": 1}]},
        {"reward_type": "no-dash"},
        {"pending_days": 0},
        {"pending_days": 366},
    ):
        with pytest.raises(ValidationError):
            TaskCreate.model_validate({**BASE, **bad})


def test_a_patch_may_clear_pending_days_but_not_the_reward_type() -> None:
    assert TaskPatch.model_validate({"pending_days": None}).model_dump(exclude_unset=True) == {
        "pending_days": None
    }
    for bad in ({"reward_type": None}, {"extra_rewards": None}, {"name": None}):
        with pytest.raises(ValidationError):
            TaskPatch.model_validate(bad)
