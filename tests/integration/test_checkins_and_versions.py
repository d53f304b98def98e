"""Check-in streaks, make-ups, rule versions and the dry run, through the running suite."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import ADMIN, envelope, eventually, unique
from tests.integration.helpers import (
    balance,
    create_task,
    credit,
    entries,
    read_topic,
    send,
    wait_for_balance,
)

pytestmark = pytest.mark.integration

SHANGHAI = ZoneInfo("Asia/Shanghai")
LADDER = [
    {"day": 1, "amount": 5},
    {"day": 2, "amount": 5},
    {"day": 3, "amount": 10},
    {"day": 7, "amount": 30},
]


def today() -> date:
    return datetime.now(SHANGHAI).date()


def at(day: date, hour: int = 9, minute: int = 0) -> str:
    return datetime.combine(day, time(hour, minute), SHANGHAI).isoformat()


async def checkin_rule(tasks: Any, **fields: Any) -> tuple[dict[str, Any], str]:
    action = unique("checkin").lower()
    rule = await create_task(
        tasks,
        name="check-in",
        action=action,
        kind="checkin",
        ladder=LADDER,
        cycle_days=7,
        **fields,
    )
    return rule, action


async def check_in(sensor: Any, user: str, action: str, *moments: str) -> None:
    await send(sensor, [envelope(user, action, m) for m in moments])


async def test_seven_days_in_a_row_pay_the_ladder_and_the_calendar_shows_them(http) -> None:
    tasks, sensor, ledger = http("task_progress"), http("behavior_sensor"), http("rewards_ledger")
    rule, action = await checkin_rule(tasks)
    user = unique("streak")
    days = [today() - timedelta(days=n) for n in range(6, -1, -1)]  # the last 7, today last
    await check_in(sensor, user, action, *(at(d) for d in days))

    await wait_for_balance(ledger, user, 5 + 5 + 10 + 10 + 10 + 10 + 30)
    calendar = await tasks.get(
        f"/v1/users/{user}/checkins", params={"task_id": rule["id"]}, headers=ADMIN
    )
    body = calendar.json()
    assert body["current_streak"] == 7 and body["longest_streak"] == 7
    this_month = [d for d in days if d.month == today().month]
    assert [d["day"] for d in body["days"]] == [d.isoformat() for d in this_month]
    assert body["today_reward"] == 30 and body["tomorrow_reward"] == 5  # the ladder restarts


async def test_a_gap_resets_and_two_minutes_across_midnight_are_two_days(http) -> None:
    tasks, sensor, ledger = http("task_progress"), http("behavior_sensor"), http("rewards_ledger")
    rule, action = await checkin_rule(tasks)
    user = unique("gap")
    d = today() - timedelta(days=6)
    await check_in(
        sensor,
        user,
        action,
        at(d, 23, 59),
        at(d + timedelta(days=1), 0, 1),  # two minutes later, the next business day: streak 2
        at(d + timedelta(days=3)),  # a day missed: the streak starts again
    )
    await wait_for_balance(ledger, user, 5 + 5 + 5)
    body = (
        await tasks.get(f"/v1/users/{user}/checkins", params={"task_id": rule["id"]}, headers=ADMIN)
    ).json()
    assert body["longest_streak"] == 2 and body["current_streak"] == 0


def two_missed_days_in_one_month() -> tuple[date, date]:
    for k in range(2, 10):
        first, second = today() - timedelta(days=k + 1), today() - timedelta(days=k)
        if first.month == second.month:
            return first, second
    raise AssertionError("unreachable")


async def test_a_makeup_bridges_the_gap_pays_only_new_steps_and_charges_once(http) -> None:
    tasks, sensor, ledger = http("task_progress"), http("behavior_sensor"), http("rewards_ledger")
    makeup_rule = {"window_days": 7, "max_per_month": 1, "cost_points": 20}
    rule, action = await checkin_rule(tasks, makeup=makeup_rule)
    user = unique("makeup")
    missed, after = today() - timedelta(days=2), today() - timedelta(days=1)
    await credit(ledger, user, 100)
    await check_in(sensor, user, action, at(missed - timedelta(days=1)), at(after), at(today()))
    await wait_for_balance(ledger, user, 100 + 5 + 5 + 5)  # 1 | 1, 2

    key = unique("mk")
    body = {"task_id": rule["id"], "day": missed.isoformat(), "idempotency_key": key}
    answers = await asyncio.gather(
        *(
            tasks.post(f"/v1/users/{user}/checkins/makeup", json=b, headers=ADMIN)
            for b in [body] * 4 + [{**body, "idempotency_key": unique("other")}] * 2
        )
    )
    assert sorted(a.status_code for a in answers).count(201) == 1, [a.text for a in answers]
    assert all(a.status_code in (200, 201) for a in answers)
    made = answers[[a.status_code for a in answers].index(201)].json()
    # missed -> day 2 (5); after -> day 3 (10, had 5); today -> day 4 (10, had 5)
    assert made["streak"] == 2 and sum(r["amount"] for r in made["rewards"]) == 15
    await wait_for_balance(ledger, user, 100 + 15 - 20 + 15)
    debits = [e for e in await entries(ledger, user) if e["kind"] == "debit"]
    assert len(debits) == 1 and debits[0]["amount"] == -20

    calendar = (
        await tasks.get(f"/v1/users/{user}/checkins", params={"task_id": rule["id"]}, headers=ADMIN)
    ).json()
    assert calendar["current_streak"] == 4
    assert {"day": missed.isoformat(), "kind": "makeup"} in calendar["days"] or missed.month != (
        today().month
    )


async def test_makeups_are_refused_past_the_monthly_limit_or_when_not_allowed(http) -> None:
    tasks, ledger = http("task_progress"), http("rewards_ledger")
    makeup_rule = {"window_days": 10, "max_per_month": 1, "cost_points": 5}
    rule, _ = await checkin_rule(tasks, makeup=makeup_rule)
    user = unique("limit")
    await credit(ledger, user, 50)
    first, second = two_missed_days_in_one_month()
    url = f"/v1/users/{user}/checkins/makeup"

    def ask(day: date, **more: Any) -> dict[str, Any]:
        return {
            "task_id": rule["id"],
            "day": day.isoformat(),
            "idempotency_key": unique("k"),
            **more,
        }

    assert (await tasks.post(url, json=ask(first), headers=ADMIN)).status_code == 201
    limited = await tasks.post(url, json=ask(second), headers=ADMIN)
    assert limited.status_code == 409 and limited.json()["error"] == "makeup_limit_reached"
    for refused in (ask(today() + timedelta(days=1)), ask(today() - timedelta(days=30))):
        answer = await tasks.post(url, json=refused, headers=ADMIN)
        assert answer.status_code == 409 and answer.json()["error"] == "makeup_not_allowed"
    poor = unique("poor")
    broke = await tasks.post(f"/v1/users/{poor}/checkins/makeup", json=ask(first), headers=ADMIN)
    assert broke.status_code == 409 and broke.json()["error"] == "insufficient_points"
    # one make-up charged at once; the day-1 reward it pays (5) arrives through progress.events
    await wait_for_balance(ledger, user, 45 + 5)


async def test_the_dry_run_equals_what_the_live_rule_pays(http) -> None:
    tasks, sensor, ledger = http("task_progress"), http("behavior_sensor"), http("rewards_ledger")
    action = unique("like").lower()
    draft = {
        "name": "like 3 -> 2 points and 1 growth, 4 times a day",
        "action": action,
        "target_count": 3,
        "reward_points": 2,
        "period": "day",
        "max_per_period": 4,
        "extra_rewards": [{"reward_type": "growth", "amount": 1}],
    }
    await create_task(tasks, **draft)
    users = [unique("sim") for _ in range(3)]
    start = datetime.now(UTC) - timedelta(days=3)
    sent = []
    for i, user in enumerate(users):
        for n in range(7 + 8 * i):  # 7, 15, 23 likes over two days
            sent.append(envelope(user, action, (start + timedelta(hours=n * 2)).isoformat()))
    await send(sensor, sent)

    async def settled() -> list[int]:
        points = [await balance(ledger, u) for u in users]
        await asyncio.sleep(1)
        assert points == [await balance(ledger, u) for u in users] and sum(points) > 0
        return points

    live = await eventually(settled)
    window = {"from": (start - timedelta(hours=1)).isoformat(), "to": datetime.now(UTC).isoformat()}
    simulated = await tasks.post(
        "/v1/tasks/simulate", json={"rule": draft, **window}, headers=ADMIN
    )
    assert simulated.status_code == 200, simulated.text
    result = simulated.json()
    assert result["behaviors_scanned"] == len(sent) and result["users_matched"] == 3
    assert result["rewards"]["points"] == sum(live)
    by_user = {u["user_id"]: u["rewards"]["points"] for u in result["top_users"]}
    assert [by_user.get(u, 0) for u in users] == live
    assert result["rewards"]["growth"] == result["completions"] == sum(live) // 2
    assert sum(d["behaviors"] for d in result["by_day"]) == len(sent)


async def test_changing_a_rule_makes_a_version_and_grants_name_it(http) -> None:
    tasks, sensor, ledger = http("task_progress"), http("behavior_sensor"), http("rewards_ledger")
    action = unique("share").lower()
    rule = await create_task(tasks, action=action, reward_points=1, period="day")
    user = unique("versions")
    await check_in(sensor, user, action, datetime.now(UTC).isoformat())
    await wait_for_balance(ledger, user, 1)
    renamed = await tasks.patch(f"/v1/tasks/{rule['id']}", json={"name": "renamed"}, headers=ADMIN)
    assert renamed.json()["version"] == 1  # the name does not decide what it pays
    changed = await tasks.patch(f"/v1/tasks/{rule['id']}", json={"reward_points": 3}, headers=ADMIN)
    assert changed.json()["version"] == 2
    await check_in(sensor, user, action, datetime.now(UTC).isoformat())
    await wait_for_balance(ledger, user, 4)

    versions = (await tasks.get(f"/v1/tasks/{rule['id']}/versions", headers=ADMIN)).json()
    assert [(v["version"], v["rule"]["reward_points"]) for v in versions["items"]] == [
        (1, 1),
        (2, 3),
    ]
    reasons = sorted(e["reason"] for e in await entries(ledger, user))
    assert f"task {rule['id']} v1" in reasons[0] and f"task {rule['id']} v2" in reasons[1]


async def test_bad_input_is_refused_and_changes_nothing(http) -> None:
    tasks = http("task_progress")
    bad_rules = [
        {"name": "x", "action": "checkin_x", "kind": "checkin"},  # no ladder
        {
            "name": "x",
            "action": "checkin_x",
            "kind": "checkin",
            "ladder": [{"day": 2, "amount": 1}],
        },
        {"name": "x", "action": "like_x", "reward_points": 1, "ladder": LADDER},  # not check-in
        {"name": "x", "action": "like_x"},  # no reward_points
    ]
    for body in bad_rules:
        answer = await tasks.post("/v1/tasks", json=body, headers=ADMIN)
        assert answer.status_code == 422 and "error" in answer.json(), body
    window = {
        "from": datetime.now(UTC).isoformat(),
        "to": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
    }
    simulate = await tasks.post(
        "/v1/tasks/simulate",
        json={"rule": {"name": "x", "action": "like_x", "reward_points": 1}, **window},
        headers=ADMIN,
    )
    assert simulate.status_code == 422
    month = await tasks.get("/v1/users/u/checkins", params={"month": "2026-13"}, headers=ADMIN)
    assert month.status_code == 422
    count_rule = await create_task(tasks, action=unique("a").lower(), reward_points=1)
    not_checkin = await tasks.post(
        "/v1/users/u/checkins/makeup",
        json={"task_id": count_rule["id"], "day": today().isoformat(), "idempotency_key": "k"},
        headers=ADMIN,
    )
    assert not_checkin.status_code == 404
    missing = await tasks.get(f"/v1/tasks/{unique('t')}/versions", headers=ADMIN)
    assert missing.status_code == 404


async def test_progress_events_tell_completions_checkins_and_broken_streaks(http, infra) -> None:
    tasks, sensor = http("task_progress"), http("behavior_sensor")
    rule, action = await checkin_rule(tasks)
    user = unique("events")
    d = today() - timedelta(days=5)
    await check_in(
        sensor, user, action, at(d), at(d + timedelta(days=1)), at(d + timedelta(days=3))
    )

    mine = await read_topic(
        infra.kafka_bootstrap,
        "progress.events",
        at_least=4,
        keep=lambda m: m.get("user_id") == user,
        then_wait_ms=1500,
    )
    recorded = sorted(
        (m["day"], m["streak"], m["rewards"][0]["amount"])
        for m in mine
        if m["type"] == "checkin.recorded"
    )
    assert recorded == [
        (d.isoformat(), 1, 5),
        ((d + timedelta(days=1)).isoformat(), 2, 5),
        ((d + timedelta(days=3)).isoformat(), 1, 5),
    ]
    [broken] = [m for m in mine if m["type"] == "streak.broken"]
    assert broken["previous_streak"] == 2 and broken["task_id"] == rule["id"]
    assert len({m["event_id"] for m in mine}) == len(mine)  # each decision told once


async def test_the_tasks_view_shows_todays_check_in_as_done(http) -> None:
    tasks, sensor, ledger = http("task_progress"), http("behavior_sensor"), http("rewards_ledger")
    rule, action = await checkin_rule(tasks)
    user = unique("view")
    await check_in(sensor, user, action, at(today(), 8))
    await wait_for_balance(ledger, user, 5)
    items = (await tasks.get(f"/v1/users/{user}/tasks", headers=ADMIN)).json()["items"]
    [mine] = [i for i in items if i["task_id"] == rule["id"]]
    assert (mine["status"], mine["completions"], mine["points_earned"]) == ("completed", 1, 5)
