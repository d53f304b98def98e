"""Engagement on the running suite: leaderboards fed by the real ledger, badges, tiers and
the exchange's tier-only items, through HTTP and Kafka as users and upstreams see them."""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from shared.events import BEHAVIOR_EVENTS, LEDGER_EVENTS, PROGRESS_EVENTS
from shared.messaging.lag import consumer_lag
from tests.conftest import ADMIN, eventually, unique
from tests.integration.helpers import create_item, credit, redeem, wait_for_balance

pytestmark = pytest.mark.integration

ENGAGEMENT_GROUP = "jifen.engagement.events"
ENGAGEMENT_TOPICS = (
    "ledger.events",
    "behavior.events",
    "progress.events",
    "exchange.events",
    "behavior.diverted",
)


async def create_board(engagement: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {
        "code": unique("board").replace("_", "-"),
        "name": "test board",
        "metric": "points_earned",
        "window": "day",
        **fields,
    }
    response = await engagement.post("/v1/leaderboards", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def top(engagement: httpx.AsyncClient, code: str, **params: Any) -> list[dict[str, Any]]:
    """The top as operators see it (with user ids; the public sees names only:
    tests/integration/test_engagement_names.py)."""
    response = await engagement.get(f"/v1/leaderboards/{code}/top", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def standing(engagement: httpx.AsyncClient, code: str, user: str) -> httpx.Response:
    return await engagement.get(f"/v1/leaderboards/{code}/users/{user}", headers=ADMIN)


async def settled(stack) -> None:
    """Wait until engagement has applied everything on its topics."""

    async def check() -> None:
        assert await consumer_lag(stack.kafka_bootstrap, ENGAGEMENT_GROUP, ENGAGEMENT_TOPICS) == 0

    await eventually(check, timeout=30, interval=0.3)


def ledger_event(user: str, points: int, at: datetime, asset: str = "points") -> bytes:
    """A credit as the ledger publishes it (entry ids far above what the suite's ledger uses)."""
    return json.dumps(
        {
            "type": "credited",
            "entry_id": random.randrange(10**12, 10**15),
            "user_id": user,
            "asset": asset,
            "points": points,
            "balance_after": points,
            "idempotency_key": uuid.uuid4().hex,
            "occurred_at": at.isoformat(),
        }
    ).encode()


async def test_earning_moves_a_user_up_within_a_second_and_redeeming_does_not_move_them_down(
    http, stack
) -> None:
    engagement, ledger, exchange = http("engagement"), http("rewards_ledger"), http("exchange")
    board = await create_board(engagement)
    leader, climber = unique("lead"), unique("climb")
    await credit(ledger, leader, 50)
    await credit(ledger, climber, 30)

    async def both_ranked() -> None:
        assert [i["user_id"] for i in await top(engagement, board["code"])] == [leader, climber]

    await eventually(both_ranked, timeout=15, interval=0.05)

    started = time.monotonic()
    await credit(ledger, climber, 40)

    async def climbed() -> None:
        items = await top(engagement, board["code"])
        assert [(i["user_id"], i["score"], i["rank"]) for i in items] == [
            (climber, 70, 1),
            (leader, 50, 2),
        ]

    await eventually(climbed, timeout=1.0, interval=0.02)
    assert time.monotonic() - started < 1.0

    item = await create_item(exchange, points_price=60)
    response = await redeem(exchange, climber, item["id"])
    assert response.status_code == 201, response.text
    await wait_for_balance(ledger, climber, 10)
    await settled(stack)
    mine = await standing(engagement, board["code"], climber)
    assert mine.status_code == 200, mine.text
    assert (mine.json()["score"], mine.json()["rank"]) == (70, 1)  # spending costs no rank


async def test_ties_share_a_rank_the_leader_is_in_the_top_percent_and_the_unranked_get_404(
    http,
) -> None:
    engagement, ledger = http("engagement"), http("rewards_ledger")
    board = await create_board(engagement, window="week")
    users = {unique("tie_a"): 90, unique("tie_b"): 80, unique("tie_c"): 80, unique("tie_d"): 70}
    for user, points in users.items():
        await credit(ledger, user, points)

    async def all_ranked() -> None:
        assert len(await top(engagement, board["code"])) == 4

    await eventually(all_ranked, timeout=15)
    items = await top(engagement, board["code"])
    assert [i["rank"] for i in items] == [1, 2, 2, 4]
    assert [i["score"] for i in items] == [90, 80, 80, 70]

    first = next(iter(users))
    leader = (await standing(engagement, board["code"], first)).json()
    assert (leader["rank"], leader["total"], leader["score"]) == (1, 4, 90)
    assert leader["percentile"] == 25 and leader["percentile_label"] == "前25%"
    assert [a["user_id"] for a in leader["around"]][:1] == [first]
    last = (await standing(engagement, board["code"], list(users)[3])).json()
    assert last["rank"] == 4 and last["percentile"] == 100
    assert [a["rank"] for a in last["around"]] == [2, 2, 4]

    missing = await standing(engagement, board["code"], unique("nobody"))
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_ranked"
    assert (await engagement.get("/v1/leaderboards/no-such-board/top")).status_code == 404
    bad = await engagement.get(
        f"/v1/leaderboards/{board['code']}/top", params={"period": "2026-13"}
    )
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_period"


async def test_day_week_and_month_windows_roll_at_midnight_in_the_business_timezone(
    http, producer
) -> None:
    engagement = http("engagement")
    boards = {w: await create_board(engagement, window=w) for w in ("day", "week", "month")}
    user = unique("tz")
    # Shanghai is UTC+8: 15:59 UTC on Sunday 31 March 2097 is 23:59 there, 16:01 is Monday
    # 1 April. Far-future days keep the periods open (nothing closes them during the test).
    before = datetime(2097, 3, 31, 15, 59, tzinfo=UTC)
    after = before + timedelta(minutes=2)
    await producer.send_and_wait(LEDGER_EVENTS, ledger_event(user, 7, before), key=user.encode())
    await producer.send_and_wait(LEDGER_EVENTS, ledger_event(user, 5, after), key=user.encode())

    expected = {
        "day": {"2097-03-31": 7, "2097-04-01": 5},
        "week": {"2097-W13": 7, "2097-W14": 5},
        "month": {"2097-03": 7, "2097-04": 5},
    }

    async def split() -> None:
        for window, periods in expected.items():
            for period, score in periods.items():
                items = await top(engagement, boards[window]["code"], period=period)
                assert [(i["user_id"], i["score"]) for i in items] == [(user, score)], (
                    window,
                    period,
                )

    await eventually(split, timeout=20)


async def test_flushing_the_index_and_rebuilding_gives_the_same_answers(http, stack) -> None:
    engagement, ledger = http("engagement"), http("rewards_ledger")
    board = await create_board(engagement, window="month")
    users = [unique(f"flush{i}") for i in range(6)]
    for i, user in enumerate(users):
        await credit(ledger, user, 10 * (i % 3 + 1))

    async def all_ranked() -> None:
        assert len(await top(engagement, board["code"], limit=100)) == 6

    await eventually(all_ranked, timeout=15)
    code = board["code"]
    before_top = await top(engagement, code, limit=100)
    before_users = [(await standing(engagement, code, u)).json() for u in users]

    index = aioredis.Redis.from_url(stack.redis_url)
    try:
        await index.flushall()
        assert await top(engagement, code, limit=100) == []
        rebuilt = await engagement.post(f"/v1/leaderboards/{code}/rebuild", headers=ADMIN)
        assert rebuilt.status_code == 200 and rebuilt.json()["members"] == 6
        assert await top(engagement, code, limit=100) == before_top
        assert [(await standing(engagement, code, u)).json() for u in users] == before_users

        await index.flushall()  # lost again, with nobody asking: the worker notices

        async def rebuilt_by_itself() -> None:
            assert await top(engagement, code, limit=100) == before_top

        await eventually(rebuilt_by_itself, timeout=30, interval=0.5)
    finally:
        await index.aclose()


async def test_badges_are_awarded_once_whatever_is_replayed(http, producer) -> None:
    engagement, ledger = http("engagement"), http("rewards_ledger")
    action = unique("act").lower()
    first = {
        "code": unique("first").replace("_", "-"),
        "name": "First share",
        "criteria": {"type": "first_action", "action": action},
        "reward": {"reward_type": "points", "amount": 5},
    }
    thrice = {
        "code": unique("thrice").replace("_", "-"),
        "name": "Three shares this week",
        "criteria": {"type": "action_count", "action": action, "count": 3, "within_days": 7},
    }
    streak = {
        "code": unique("streak").replace("_", "-"),
        "name": "Three days in a row",
        "criteria": {"type": "streak", "days": 3},
    }
    for badge in (first, thrice, streak):
        response = await engagement.post("/v1/badges", json=badge, headers=ADMIN)
        assert response.status_code == 201, response.text
    dup = await engagement.post("/v1/badges", json=first, headers=ADMIN)
    assert dup.status_code == 409 and dup.json()["error"] == "badge_exists"

    user = unique("badger")
    now = datetime.now(UTC)
    behavior = {
        "behavior_id": uuid.uuid4().hex,
        "event_id": uuid.uuid4().hex,
        "source": "app",
        "user_id": user,
        "action": action,
        "occurred_at": now.isoformat(),
        "received_at": now.isoformat(),
    }
    for _ in range(3):  # the same behavior delivered three times counts once
        await producer.send_and_wait(
            BEHAVIOR_EVENTS, json.dumps(behavior).encode(), key=user.encode()
        )

    async def first_badge() -> dict[str, Any]:
        response = await engagement.get(f"/v1/users/{user}/badges", headers=ADMIN)
        assert response.status_code == 200, response.text
        body = response.json()
        assert [b["code"] for b in body["earned"]] == [first["code"]]
        return dict(body)

    body = await eventually(first_badge, timeout=20)
    locked = {b["code"]: b["progress"] for b in body["locked"]}
    assert locked[thrice["code"]] == {"current": 1, "target": 3}
    assert locked[streak["code"]] == {"current": 0, "target": 3}

    checkin = {
        "type": "checkin.recorded",
        "event_id": uuid.uuid4().hex,
        "user_id": user,
        "task_id": "checkin",
        "day": now.date().isoformat(),
        "kind": "normal",
        "streak": 3,
        "occurred_at": now.isoformat(),
    }
    for _ in range(2):
        await producer.send_and_wait(
            PROGRESS_EVENTS, json.dumps(checkin).encode(), key=user.encode()
        )
        await producer.send_and_wait(
            BEHAVIOR_EVENTS, json.dumps(behavior).encode(), key=user.encode()
        )

    async def streak_badge() -> None:
        response = await engagement.get(f"/v1/users/{user}/badges", headers=ADMIN)
        earned = [b["code"] for b in response.json()["earned"]]
        assert sorted(earned) == sorted([first["code"], streak["code"]])

    await eventually(streak_badge, timeout=20)
    await wait_for_balance(ledger, user, 5)  # the reward, paid once


async def test_growth_upgrades_the_tier_and_a_tier_only_item_is_refused_below_it(http) -> None:
    engagement, ledger, exchange = http("engagement"), http("rewards_ledger"), http("exchange")
    ladder = [
        {"code": "member", "name": "会员", "min_growth": 0, "multiplier": 1.0},
        {"code": "silver", "name": "白银", "min_growth": 100, "multiplier": 1.2},
        {
            "code": "gold",
            "name": "黄金",
            "min_growth": 1000,
            "multiplier": 1.5,
            "benefits": ["gift"],
        },
    ]
    response = await engagement.put("/v1/tiers", json=ladder, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert [t["level"] for t in response.json()["tiers"]] == [1, 2, 3]
    wrong = await engagement.put("/v1/tiers", json=list(reversed(ladder)), headers=ADMIN)
    assert wrong.status_code == 422 and wrong.json()["error"] == "invalid_ladder"

    user = unique("tier")
    item = await create_item(exchange, points_price=10, min_tier="gold")
    assert item["min_tier"] == "gold"
    await credit(ledger, user, 100)
    await credit(ledger, user, 150, asset="growth")

    async def silver() -> dict[str, Any]:
        response = await engagement.get(f"/v1/users/{user}/tier", headers=ADMIN)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["tier"]["code"] == "silver"
        return dict(body)

    body = await eventually(silver, timeout=20)
    assert body["growth_in_window"] == 150
    assert body["next_tier"]["code"] == "gold" and body["growth_to_next"] == 850
    # nothing earned later stays in the window at the end of the term: silver is at risk
    assert body["at_risk"]["growth_needed"] == 100

    refused = await redeem(exchange, user, item["id"])
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "tier_required"

    await credit(ledger, user, 900, asset="growth")

    async def gold_redeems() -> None:
        response = await redeem(exchange, user, item["id"])
        assert response.status_code == 201, response.text

    await eventually(gold_redeems, timeout=20, interval=0.3)
    tier = (await engagement.get(f"/v1/users/{user}/tier", headers=ADMIN)).json()
    assert tier["tier"]["code"] == "gold" and tier["next_tier"] is None


async def test_bad_definitions_are_refused_with_an_error_body_and_change_nothing(http) -> None:
    engagement = http("engagement")
    before = (await engagement.get("/v1/leaderboards")).json()["items"]
    bad_boards = [
        {"code": "x1", "name": "n", "metric": "action_count", "window": "day"},  # no action
        {"code": "x2", "name": "n", "metric": "points_earned", "window": "fortnight"},
        {
            "code": "x3",
            "name": "n",
            "metric": "points_earned",
            "window": "day",
            "prizes": [
                {"rank_from": 1, "rank_to": 3, "amount": 10},
                {"rank_from": 3, "rank_to": 5, "amount": 5},
            ],
        },
        {
            "code": "x4",
            "name": "n",
            "metric": "points_earned",
            "window": "all_time",
            "prizes": [{"rank_from": 1, "rank_to": 1, "amount": 10}],
        },
    ]
    for body in bad_boards:
        response = await engagement.post("/v1/leaderboards", json=body, headers=ADMIN)
        assert response.status_code == 422, (body, response.text)
        assert set(response.json()) >= {"error", "message"}
    anonymous = await engagement.post(
        "/v1/leaderboards",
        json={"code": "x5", "name": "n", "metric": "points_earned", "window": "day"},
    )
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    assert (await engagement.get("/v1/leaderboards")).json()["items"] == before

    badge = {"code": "b1", "name": "n", "criteria": {"type": "streak", "days": 0}}
    response = await engagement.post("/v1/badges", json=badge, headers=ADMIN)
    assert response.status_code == 422 and response.json()["error"] == "validation_error"
    unknown = {"code": "b2", "name": "n", "criteria": {"type": "vibes"}}
    assert (await engagement.post("/v1/badges", json=unknown, headers=ADMIN)).status_code == 422
    assert (await engagement.put("/v1/tiers", json=[], headers=ADMIN)).status_code == 422


async def test_the_chaos_invariants_hold_for_users_who_earned_and_got_a_rewarded_badge(
    http, stack, infra, producer
) -> None:
    from chaos import engagement as invariants

    engagement, ledger = http("engagement"), http("rewards_ledger")
    async with httpx.AsyncClient(headers=ADMIN, timeout=30) as client:
        await invariants.prepare(client, stack.url("engagement"))
        await invariants.prepare(client, stack.url("engagement"))  # twice is harmless
    action = unique("inv").lower()
    badge = {
        "code": unique("inv").replace("_", "-"),
        "name": "rewarded once",
        "criteria": {"type": "first_action", "action": action},
        "reward": {"reward_type": "points", "amount": 2},
    }
    assert (await engagement.post("/v1/badges", json=badge, headers=ADMIN)).status_code == 201
    users = [unique("inv") for _ in range(3)]
    for i, user in enumerate(users):
        await credit(ledger, user, 3 + i * 4)
    now = datetime.now(UTC).isoformat()
    for user in users[1:]:
        behavior = {
            "behavior_id": uuid.uuid4().hex,
            "event_id": uuid.uuid4().hex,
            "source": "app",
            "user_id": user,
            "action": action,
            "occurred_at": now,
            "received_at": now,
        }
        for _ in range(2):
            await producer.send_and_wait(
                BEHAVIOR_EVENTS, json.dumps(behavior).encode(), key=user.encode()
            )
    await wait_for_balance(ledger, users[1], 7 + 2)
    await wait_for_balance(ledger, users[2], 11 + 2)
    await settled(stack)

    async def clean() -> None:
        assert await invariants.check(infra.database_url, stack.redis_url, users) == []

    await eventually(clean, timeout=15)
    badges = (await engagement.get(f"/v1/users/{users[0]}/badges", headers=ADMIN)).json()
    assert badges["earned"] == []
