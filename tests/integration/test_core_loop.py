"""Behavior in, points out - exactly once - through the running suite (real PostgreSQL + broker)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared.events import BehaviorEvent
from tests.conftest import ADMIN, envelope, eventually, unique
from tests.integration.helpers import (
    balance,
    create_task,
    entries,
    reconciliation,
    send,
    wait_for_balance,
)

pytestmark = pytest.mark.integration
SHANGHAI = ZoneInfo("Asia/Shanghai")


def local_day(offset_days: int = 0) -> datetime:
    """Midnight (business timezone) of today + offset."""
    now = datetime.now(SHANGHAI)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=offset_days)


async def test_the_same_event_three_times_is_credited_once(http, producer) -> None:
    sensor, tasks, ledger = http("behavior_sensor"), http("task_progress"), http("rewards_ledger")
    action, user = unique("checkin"), unique("u")
    await create_task(tasks, action=action, reward_points=5, period="day", max_per_period=10)
    event = envelope(
        user, action, (local_day() + timedelta(hours=9)).isoformat(), event_id="same-event"
    )

    assert await send(sensor, [event]) == {"accepted": 1, "duplicates": 0}
    assert await send(sensor, [event]) == {"accepted": 0, "duplicates": 1}
    # ... and once more by the other door: Kafka. Still the same (source, event_id).
    await producer.send_and_wait("upstream.events", json.dumps(event).encode(), key=user.encode())

    await wait_for_balance(ledger, user, 5)
    await asyncio.sleep(2)  # give any duplicate time to (wrongly) arrive
    assert await balance(ledger, user) == 5
    assert len(await entries(ledger, user)) == 1


async def test_a_behavior_published_twice_on_behavior_events_counts_once(http, producer) -> None:
    """task_progress keeps no separate inbox: the behavior history's key decides. The same
    behavior twice in one fetch, then again after other behaviors, completes the rule once."""
    tasks, ledger = http("task_progress"), http("rewards_ledger")
    action, user = unique("share"), unique("u")
    await create_task(tasks, action=action, reward_points=5, period="lifetime", max_per_period=3)
    at = local_day() + timedelta(hours=10)
    same = BehaviorEvent(
        behavior_id=str(uuid.uuid4()),
        event_id=unique("e"),
        source="test",
        user_id=user,
        action=action,
        occurred_at=at,
        received_at=at,
    )
    other = same.model_copy(update={"behavior_id": str(uuid.uuid4()), "event_id": unique("e")})
    for event in (same, same, other, same):
        await producer.send("behavior.events", event.model_dump_json().encode(), key=user.encode())
    await producer.flush()
    await wait_for_balance(ledger, user, 10)
    await asyncio.sleep(2)  # give a repeat time to (wrongly) count
    assert await balance(ledger, user) == 10
    assert len(await entries(ledger, user)) == 2


async def test_concurrent_single_event_posts_each_get_their_own_answer_and_count_once(
    http,
) -> None:
    """Small requests arriving together share a transaction (group commit). Each caller still
    learns whether its own behavior was new, a behavior posted by two callers at once is
    accepted by exactly one, and every accepted behavior is credited once."""
    sensor, tasks, ledger = http("behavior_sensor"), http("task_progress"), http("rewards_ledger")
    action, user = unique("order"), unique("u")
    await create_task(tasks, action=action, reward_points=1, period="lifetime", max_per_period=1000)
    at = (local_day() + timedelta(hours=11)).isoformat()
    events = [envelope(user, action, at) for _ in range(60)]
    posts = events + events[:20]  # 20 behaviors posted twice, concurrently
    answers = await asyncio.gather(*(send(sensor, [e]) for e in posts))

    accepted: dict[str, int] = {}
    for event, answer in zip(posts, answers, strict=True):
        assert answer["accepted"] + answer["duplicates"] == 1
        accepted[event["event_id"]] = accepted.get(event["event_id"], 0) + answer["accepted"]
    assert sorted(set(accepted.values())) == [1]  # each behavior accepted by exactly one post
    await wait_for_balance(ledger, user, 60)
    await asyncio.sleep(1)
    assert await balance(ledger, user) == 60


async def test_100_likes_in_a_day_give_20_points_and_the_next_day_starts_over(http) -> None:
    sensor, tasks, ledger = http("behavior_sensor"), http("task_progress"), http("rewards_ledger")
    action, user = unique("like"), unique("u")
    task = await create_task(
        tasks, action=action, target_count=3, reward_points=1, period="day", max_per_period=20
    )
    yesterday, today = local_day(-1), local_day(0)
    likes = [
        envelope(user, action, (yesterday + timedelta(minutes=i)).isoformat()) for i in range(100)
    ]

    assert await send(sensor, likes) == {"accepted": 100, "duplicates": 0}
    await wait_for_balance(ledger, user, 20)

    # The next day by occurred_at is a new period: 9 likes -> 3 more completions.
    await send(
        sensor,
        [envelope(user, action, (today + timedelta(minutes=i)).isoformat()) for i in range(9)],
    )
    await wait_for_balance(ledger, user, 23)

    response = await tasks.get(f"/v1/users/{user}/tasks", headers=ADMIN)
    assert response.status_code == 200
    mine = next(t for t in response.json()["items"] if t["task_id"] == task["id"])
    assert (mine["count"], mine["completions"], mine["points_earned"]) == (9, 3, 3)
    assert mine["period_key"] == today.strftime("%Y-%m-%d")
    assert mine["status"] == "in_progress"


async def test_rule_conditions_decide_which_behaviors_count(http) -> None:
    sensor, tasks, ledger = http("behavior_sensor"), http("task_progress"), http("rewards_ledger")
    action, user = unique("comment"), unique("u")
    await create_task(
        tasks,
        action=action,
        reward_points=10,
        period="day",
        max_per_period=5,
        conditions=[{"attribute": "length", "op": ">=", "value": 20}],
    )
    at = (local_day() + timedelta(hours=12)).isoformat()
    await send(
        sensor,
        [
            envelope(user, action, at, length=5),
            envelope(user, action, at, length=42),
            envelope(user, action, at, length="long"),
        ],
    )
    await wait_for_balance(ledger, user, 10)


async def test_an_order_paid_message_through_the_adapter_credits_its_ratio(http, producer) -> None:
    tasks, ledger = http("task_progress"), http("rewards_ledger")
    shop, user = unique("shop"), unique("buyer")
    only_this_shop = [{"attribute": "shop_id", "op": "==", "value": shop}]
    await create_task(
        tasks,
        action="order_paid",
        kind="amount_ratio",
        amount_unit_cents=1000,
        reward_points=1,
        period="lifetime",
        conditions=only_this_shop,
    )
    await create_task(
        tasks,
        action="order_paid",
        reward_points=20,
        period="day",
        conditions=[*only_this_shop, {"attribute": "amount_cents", "op": ">=", "value": 10000}],
    )
    paid_ms = int(datetime.now(SHANGHAI).timestamp() * 1000)
    order = {
        "orderNo": unique("O"),
        "buyerId": user,
        "orderStatus": "PAID",
        "payAmount": "129.00",
        "currency": "CNY",
        "paidTime": paid_ms,
        "shopId": shop,
        "items": [{"sku": "A", "qty": 2}],
    }
    created = {**order, "orderNo": unique("O"), "orderStatus": "CREATED"}  # not a behavior: ignored

    await producer.send_and_wait("upstream.orders", json.dumps(created).encode(), key=user.encode())
    await producer.send_and_wait("upstream.orders", json.dumps(order).encode(), key=user.encode())
    await producer.send_and_wait(
        "upstream.orders", json.dumps(order).encode(), key=user.encode()
    )  # replayed

    await wait_for_balance(ledger, user, 12 + 20)  # 129 yuan -> 12 points, plus the big-order bonus
    await asyncio.sleep(1.5)
    assert await balance(ledger, user) == 32


async def _dead_letters(infra, topic: str, needle: str) -> list[dict]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        f"{topic}.dlq",
        bootstrap_servers=infra.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=unique("dlq-reader"),
    )
    await consumer.start()
    try:
        found: list[dict] = []
        for _ in range(20):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                found += [json.loads(r.value) for r in records if needle in r.value.decode()]
            if found:
                break
        return found
    finally:
        await consumer.stop()


async def test_a_poison_message_goes_to_the_dlq_and_later_messages_still_count(
    http, producer, infra
) -> None:
    sensor, tasks, ledger = http("behavior_sensor"), http("task_progress"), http("rewards_ledger")
    action, user = unique("share"), unique("u")
    await create_task(tasks, action=action, reward_points=3, period="day", max_per_period=10)
    marker = unique("poison")
    at = (local_day() + timedelta(hours=8)).isoformat()

    await producer.send_and_wait(
        "upstream.events", f"{{not json {marker}".encode(), key=user.encode()
    )
    bad_envelope = envelope(user, "Not-Snake", at, event_id=marker)
    await producer.send_and_wait(
        "upstream.events", json.dumps(bad_envelope).encode(), key=user.encode()
    )
    await producer.send_and_wait(
        "behavior.events", json.dumps({"junk": marker}).encode(), key=user.encode()
    )
    await producer.send_and_wait(
        "rewards.grants", json.dumps({"grant_id": marker, "points": -1}).encode(), key=user.encode()
    )
    await producer.send_and_wait(
        "upstream.events", json.dumps(envelope(user, action, at)).encode(), key=user.encode()
    )

    await wait_for_balance(ledger, user, 3)
    # Each consumer group that reads a topic dead-letters its own copy of a poison message:
    # behavior.events is read by task_progress, by engagement and by insights.
    for topic, expected in (("upstream.events", 2), ("behavior.events", 3), ("rewards.grants", 1)):
        letters = await eventually(
            lambda t=topic, n=expected: _expect_letters(infra, t, marker, n), timeout=20
        )
        assert all(letter["error"] and letter["topic"] == topic for letter in letters)
        if topic == "behavior.events":
            assert {letter["consumer"] for letter in letters} == {
                "task_progress.behaviors",
                "engagement.events",
                "insights.events",
            }
    _ = sensor


async def _expect_letters(infra, topic: str, marker: str, count: int) -> list[dict]:
    letters = await _dead_letters(infra, topic, marker)
    assert len(letters) == count, letters
    return letters


@pytest.mark.parametrize("door", ["http", "kafka"])
async def test_anti_farming_diverts_the_excess_instead_of_dropping_it(http, producer, door) -> None:
    """HTTP intake leaves behaviors to the processor; Kafka intake records them as published
    and processes them in the same transaction. Either way the excess is diverted."""
    sensor, tasks, ledger = http("behavior_sensor"), http("task_progress"), http("rewards_ledger")
    user, action = unique("u"), f"farm_test_{door}"  # limited to 5 an hour in tests
    await create_task(tasks, action=action, reward_points=1, period="lifetime")
    start = local_day() + timedelta(hours=3)
    events = [envelope(user, action, (start + timedelta(seconds=i)).isoformat()) for i in range(8)]
    if door == "http":
        await send(sensor, events)
    else:
        for event in events:
            await producer.send("upstream.events", json.dumps(event).encode(), key=user.encode())
        await producer.flush()

    await wait_for_balance(ledger, user, 5)
    response = await sensor.get("/v1/diverted", params={"user_id": user}, headers=ADMIN)
    assert response.status_code == 200
    diverted = response.json()["items"]
    assert len(diverted) == 3
    assert all("limit of 5" in item["reason"] for item in diverted)
    assert {item["event_id"] for item in diverted} == {e["event_id"] for e in events[5:]}
    await asyncio.sleep(1)  # a wrongly published excess would be credited by now
    assert await balance(ledger, user) == 5


async def test_concurrent_debits_never_overdraw(http) -> None:
    ledger = http("rewards_ledger")
    user = unique("u")
    response = await ledger.post(
        f"/v1/accounts/{user}/credits",
        headers=ADMIN,
        json={"points": 100, "idempotency_key": unique("k"), "reason": "test grant"},
    )
    assert response.status_code == 201, response.text

    async def spend(i: int) -> int:
        r = await ledger.post(
            f"/v1/accounts/{user}/debits",
            headers=ADMIN,
            json={"points": 7, "idempotency_key": f"spend-{i}", "reason": "race"},
        )
        assert r.status_code in (201, 409), r.text
        if r.status_code == 409:
            assert r.json()["error"] == "insufficient_points"
        return r.status_code

    codes = await asyncio.gather(*(spend(i) for i in range(40)))
    assert codes.count(201) == 14  # 14 x 7 = 98 <= 100 < 15 x 7
    assert await balance(ledger, user) == 2
    # A retried request is answered from the journal, not debited again.
    replay = await ledger.post(
        f"/v1/accounts/{user}/debits",
        headers=ADMIN,
        json={"points": 7, "idempotency_key": f"spend-{codes.index(201)}", "reason": "race"},
    )
    assert replay.status_code == 200
    assert await balance(ledger, user) == 2


async def test_debits_take_the_earliest_expiring_lots_first(http) -> None:
    ledger = http("rewards_ledger")
    user = unique("u")
    for points, days in ((50, 30), (30, 5), (20, 60)):
        r = await ledger.post(
            f"/v1/accounts/{user}/credits",
            headers=ADMIN,
            json={
                "points": points,
                "idempotency_key": unique("k"),
                "reason": "lot",
                "validity_days": days,
            },
        )
        assert r.status_code == 201, r.text
    r = await ledger.post(
        f"/v1/accounts/{user}/debits",
        headers=ADMIN,
        json={"points": 40, "idempotency_key": unique("k"), "reason": "redeem"},
    )
    assert r.status_code == 201, r.text
    assert [a["points"] for a in r.json()["allocations"]] == [
        30,
        10,
    ]  # the 5-day lot, then the 30-day lot
    account = (await ledger.get(f"/v1/accounts/{user}", headers=ADMIN)).json()
    assert account["balance"] == 60
    assert account["expiring_within_30_days"] == 40
    assert account["expiring_within_7_days"] == 0


async def test_reconciliation_is_clean_after_everything(http) -> None:
    report = await reconciliation(http("rewards_ledger"))
    assert report["ok"], report["violations"]
    assert report["accounts_checked"] > 0
