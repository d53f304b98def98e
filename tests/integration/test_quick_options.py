"""Quick options (一键兑换) on the running suite: the 0.3-1.0x band aimed at 0.7x, tiers,
the expiry warning only when expiring points cover the price, nothing below 100 points but
the fastest tasks, and the exchange's credential reading the recommender and the rules.

Prices sit around 70,000 points, a range no other test's items use, so the options are ours
whether the recommender (insights, which copies the catalog every few seconds) or the
catalog chose them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.auth import issue_user_token
from shared.settings import DEV_JWT_SECRET, dev_service_token
from tests.conftest import ADMIN, eventually, unique
from tests.integration.helpers import create_item, create_task, credit, wait_for_balance

pytestmark = pytest.mark.integration

# The ladder tests/integration/test_engagement.py sets: putting the same one changes nothing.
LADDER = [
    {"code": "member", "name": "会员", "min_growth": 0, "multiplier": 1.0},
    {"code": "silver", "name": "白银", "min_growth": 100, "multiplier": 1.2},
    {"code": "gold", "name": "黄金", "min_growth": 1000, "multiplier": 1.5, "benefits": ["gift"]},
]


def as_user(user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_user_token(DEV_JWT_SECRET, user_id)}"}


async def options(exchange: httpx.AsyncClient, user: str) -> dict[str, Any]:
    response = await exchange.get(f"/v1/users/{user}/quick-options", headers=as_user(user))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_the_item_nearest_0_7x_inside_0_3_to_1x_is_offered_never_above_the_tier(
    http,
) -> None:
    exchange, ledger, engagement = http("exchange"), http("rewards_ledger"), http("engagement")
    response = await engagement.put("/v1/tiers", json=LADDER, headers=ADMIN)
    assert response.status_code == 200, response.text
    low = await create_item(exchange, points_price=20_000)  # under 0.3x of 70,000
    aimed = await create_item(exchange, points_price=49_000)  # 0.7x
    high = await create_item(exchange, points_price=90_000)  # over the balance
    gold = await create_item(exchange, points_price=49_000, min_tier="gold")
    gone = await create_item(exchange, points_price=49_000, stock=0)
    ours = {low["id"], aimed["id"], high["id"], gold["id"], gone["id"]}

    user = unique("quick")
    await credit(ledger, user, 70_000, validity_days=365)
    await wait_for_balance(ledger, user, 70_000)
    body = await options(exchange, user)
    assert body["balance"] == 70_000
    offered = [o["item"]["id"] for o in body["options"]]
    assert [i for i in offered if i in ours] == [aimed["id"]], body
    [option] = [o for o in body["options"] if o["item"]["id"] == aimed["id"]]
    assert option["balance_after"] == 21_000
    assert option["warning"] is None  # nothing expires
    assert body["points_needed"] == 0 and body["tasks"] == []
    # Asked many times (the recommender's answer or not), the gold item never shows.
    for _ in range(5):
        again = await options(exchange, user)
        assert gold["id"] not in {o["item"]["id"] for o in again["options"]}

    # Once the user is gold, it does (and redemption would accept it).
    await credit(ledger, user, 1000, asset="growth")

    async def gold_offered() -> None:
        got = {o["item"]["id"] for o in (await options(exchange, user))["options"]}
        assert gold["id"] in got

    await eventually(gold_offered, timeout=30, interval=0.5)

    forbidden = await exchange.get(f"/v1/users/{user}/quick-options", headers=as_user("x"))
    assert forbidden.status_code == 403


async def test_the_expiry_warning_only_when_expiring_points_cover_the_price(http) -> None:
    exchange, ledger = http("exchange"), http("rewards_ledger")
    item = await create_item(exchange, points_price=48_500)
    soon = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    covered, short = unique("covered"), unique("short")
    await credit(ledger, covered, 20_000, validity_days=365)
    await credit(ledger, covered, 50_000, expires_at=soon)
    await credit(ledger, short, 40_000, validity_days=365)
    await credit(ledger, short, 30_000, expires_at=soon)
    for user in (covered, short):
        await wait_for_balance(ledger, user, 70_000)
    warned = await options(exchange, covered)
    [option] = [o for o in warned["options"] if o["item"]["id"] == item["id"]]
    assert warned["expiring_within_7_days"] == 50_000
    assert "50000" in option["warning"] and "48500" in option["warning"]
    calm = await options(exchange, short)
    [option] = [o for o in calm["options"] if o["item"]["id"] == item["id"]]
    assert calm["expiring_within_7_days"] == 30_000 and option["warning"] is None


async def test_below_100_points_no_options_but_the_two_fastest_tasks(http) -> None:
    exchange, ledger, tasks = http("exchange"), http("rewards_ledger"), http("task_progress")
    tag = uuid.uuid4().hex[:8]
    # One action pays the most of any rule: these two are the fastest way to earn anything.
    best = await create_task(tasks, action=f"quick_best_{tag}", reward_points=1_000_000)
    second = await create_task(tasks, action=f"quick_second_{tag}", reward_points=999_999)
    await create_task(tasks, action=f"quick_slow_{tag}", reward_points=1_000_000, target_count=5)
    user = unique("poor")
    await credit(ledger, user, 99)
    await wait_for_balance(ledger, user, 99)

    async def fastest() -> dict[str, Any]:
        body = await options(exchange, user)
        assert [t["task_id"] for t in body["tasks"]] == [best["id"], second["id"]], body
        return body

    body = await eventually(fastest, timeout=30, interval=0.5)
    assert body["options"] == [] and body["balance"] == 99
    assert body["points_needed"] >= 1
    assert body["tasks"][0] == {
        "task_id": best["id"],
        "name": best["name"],
        "action": best["action"],
        "reward_points": 1_000_000,
        "completions": 1,
        "actions": 1,
        "days": 0,
    }


async def test_the_exchange_credential_reads_recommendations_and_task_rules_only(http) -> None:
    insights, tasks = http("insights"), http("task_progress")
    exchange = {"Authorization": f"Bearer {dev_service_token('exchange')}"}
    user = unique("cred")
    got = await insights.get(
        f"/v1/users/{user}/recommendations",
        params={"min_price": 30, "max_price": 100},
        headers=exchange,
    )
    assert got.status_code == 200, got.text
    assert got.json()["items"] == []  # no balance, nothing to redeem
    assert (await tasks.get("/v1/tasks", params={"limit": 1}, headers=exchange)).status_code == 200
    one = await tasks.get("/v1/tasks/00000000-0000-0000-0000-000000000000", headers=exchange)
    assert one.status_code == 403
    assert (await insights.get("/v1/kpis/summary", headers=exchange)).status_code == 403
    half = await insights.get(
        f"/v1/users/{user}/recommendations", params={"min_price": 30}, headers=exchange
    )
    assert half.status_code == 422
