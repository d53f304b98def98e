"""Rewards beyond one kind of point, through the running suite: campaign currencies, pending
order points released after the return window, clawback of refunded orders (debt included),
and bad input that changes nothing.

The release runs the ledger's own sweeper on the running ledger's database with its clock
moved past the window (two replicas, twice), the way the suite's replicas would after 7 days.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.rewards_ledger.settings import Settings
from services.rewards_ledger.workers import ReleaseSweeper
from shared.db import Database
from tests.conftest import ADMIN, envelope, eventually, unique
from tests.integration.helpers import (
    create_task,
    credit,
    entries,
    open_database,
    reconciliation,
    send,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def running_ledger_db(infra) -> AsyncIterator[Database]:
    async with open_database(infra.database_url, "jifen_rewards_ledger") as db:
        yield db


async def account(ledger: Any, user: str, asset: str = "points") -> dict[str, Any]:
    response = await ledger.get(f"/v1/accounts/{user}", params={"asset": asset}, headers=ADMIN)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def settles(ledger: Any, user: str, asset: str = "points", **expected: int) -> None:
    """Wait until the account shows `expected` (balance / pending / debt)."""

    async def check() -> None:
        found = await account(ledger, user, asset)
        assert {k: found[k] for k in expected} == expected

    await eventually(check, timeout=30)


async def order_rules(tasks: Any, shop: str, **fields: Any) -> None:
    """1 point per 10 yuan, and 20 for an order of 100 yuan or more, for one shop's orders."""
    only_this_shop = [{"attribute": "shop_id", "op": "==", "value": shop}]
    await create_task(
        tasks,
        action="order_paid",
        kind="amount_ratio",
        amount_unit_cents=1000,
        reward_points=1,
        period="lifetime",
        conditions=only_this_shop,
        **fields,
    )
    await create_task(
        tasks,
        action="order_paid",
        reward_points=20,
        period="lifetime",
        conditions=[*only_this_shop, {"attribute": "amount_cents", "op": ">=", "value": 10000}],
        **fields,
    )


async def order_message(producer: Any, user: str, order: dict[str, Any]) -> None:
    await producer.send_and_wait(
        "upstream.orders", json.dumps({"buyerId": user, **order}).encode(), key=user.encode()
    )


def paid(order_no: str, shop: str, amount: str) -> dict[str, Any]:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    return {
        "orderNo": order_no,
        "orderStatus": "PAID",
        "payAmount": amount,
        "paidTime": now_ms,
        "shopId": shop,
    }


def refunded(order: dict[str, Any], refund_no: str, amount: str | None = None) -> dict[str, Any]:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    status = "REFUNDED" if amount is None else "PARTIALLY_REFUNDED"
    body = {**order, "orderStatus": status, "refundNo": refund_no, "refundTime": now_ms}
    if amount is not None:
        body["refundAmount"] = amount
    return body


async def test_a_balloon_rule_credits_balloons_not_points(http) -> None:
    ledger, tasks, sensor = http("rewards_ledger"), http("task_progress"), http("behavior_sensor")
    code = f"balloon_{unique('b')[-8:]}"
    body = {"code": code, "name": "气球", "spendable": True, "expires": False}
    assert (await ledger.post("/v1/assets", json=body, headers=ADMIN)).status_code == 201
    action = unique("like").lower()
    await create_task(
        tasks,
        action=action,
        target_count=3,
        reward_points=1,
        reward_type=code,
        period="day",
        max_per_period=20,
    )
    user, at = unique("liker"), datetime.now(UTC).isoformat()
    await send(sensor, [envelope(user, action, at) for _ in range(7)])

    await settles(ledger, user, code, balance=2)
    held = (await ledger.get(f"/v1/accounts/{user}/balances", headers=ADMIN)).json()["items"]
    assert {i["asset"]: i["balance"] for i in held}[code] == 2
    assert (await account(ledger, user))["balance"] == 0  # no points


async def test_order_points_stay_pending_then_are_released_exactly_once(
    http, producer, running_ledger_db
) -> None:
    ledger, tasks = http("rewards_ledger"), http("task_progress")
    shop, user = unique("shop"), unique("buyer")
    await order_rules(
        tasks, shop, pending_days=7, extra_rewards=[{"reward_type": "growth", "amount": 5}]
    )
    await order_message(producer, user, paid(unique("O"), shop, "129.00"))

    await settles(ledger, user, balance=0, pending=32)  # 12 + 20, not spendable yet
    await settles(ledger, user, "growth", pending=10)  # 5 growth per completed rule
    spend = {"points": 1, "idempotency_key": unique("k")}
    refused = await ledger.post(f"/v1/accounts/{user}/debits", json=spend, headers=ADMIN)
    assert refused.status_code == 409 and refused.json()["error"] == "insufficient_points"

    later = datetime.now(UTC) + timedelta(days=7, minutes=5)
    replicas = [ReleaseSweeper(Settings(), running_ledger_db) for _ in range(2)]
    await asyncio.gather(*(r.sweep_once(later) for r in replicas))
    await asyncio.gather(*(r.sweep_once(later) for r in replicas))

    await settles(ledger, user, balance=32, pending=0)
    await settles(ledger, user, "growth", balance=10, pending=0)
    kinds = [e["kind"] for e in await entries(ledger, user)]
    assert sorted(kinds) == ["pending", "pending", "release", "release"]
    spent = await ledger.post(f"/v1/accounts/{user}/debits", json=spend, headers=ADMIN)
    assert spent.status_code == 201
    assert (await reconciliation(ledger))["ok"]


async def test_a_full_refund_before_release_cancels_the_pending_points(http, producer) -> None:
    ledger, tasks = http("rewards_ledger"), http("task_progress")
    shop, user = unique("shop"), unique("buyer")
    await order_rules(tasks, shop, pending_days=7)
    order = paid(unique("O"), shop, "250.00")
    await order_message(producer, user, order)
    await settles(ledger, user, pending=45)

    await order_message(producer, user, refunded(order, "R1"))
    await settles(ledger, user, balance=0, pending=0, debt=0)
    kinds = [e["kind"] for e in await entries(ledger, user)]
    assert sorted(kinds) == ["clawback", "clawback", "pending", "pending"]
    assert (await reconciliation(ledger))["ok"]


async def test_a_refund_after_the_points_were_spent_is_debt_the_next_credit_repays(
    http, producer
) -> None:
    ledger, tasks = http("rewards_ledger"), http("task_progress")
    shop, user = unique("shop"), unique("buyer")
    await order_rules(tasks, shop)
    order = paid(unique("O"), shop, "200.00")
    await order_message(producer, user, order)
    await settles(ledger, user, balance=40)
    spend = {"points": 40, "idempotency_key": unique("k"), "reason": "a coupon"}
    assert (
        await ledger.post(f"/v1/accounts/{user}/debits", json=spend, headers=ADMIN)
    ).status_code == 201

    await order_message(producer, user, refunded(order, "R1"))
    await settles(ledger, user, balance=0, debt=40)
    await credit(ledger, user, 50)  # the next credit repays the debt first
    await settles(ledger, user, balance=10, debt=0)
    assert (await reconciliation(ledger))["ok"]


async def test_a_partial_refund_reverses_in_proportion_and_a_replay_changes_nothing(
    http, producer
) -> None:
    ledger, tasks = http("rewards_ledger"), http("task_progress")
    shop, user = unique("shop"), unique("buyer")
    await order_rules(tasks, shop)
    order = paid(unique("O"), shop, "100.00")  # 10 + 20 points
    await order_message(producer, user, order)
    await settles(ledger, user, balance=30)

    partial = refunded(order, "R1", "35.00")  # 35%: floor(3.5) + floor(7) = 10
    await order_message(producer, user, partial)
    await settles(ledger, user, balance=20)
    await order_message(producer, user, partial)  # the same refund again
    await asyncio.sleep(2)
    assert (await account(ledger, user))["balance"] == 20
    await order_message(producer, user, refunded(order, "R2", "65.00"))  # the rest
    await settles(ledger, user, balance=0, debt=0)
    assert [e["kind"] for e in await entries(ledger, user)].count("clawback") == 4
    assert (await reconciliation(ledger))["ok"]


async def test_bad_input_gets_a_4xx_and_changes_nothing(http) -> None:
    ledger, tasks = http("rewards_ledger"), http("task_progress")
    user = unique("bad")
    rule = {
        "name": "unknown asset",
        "action": unique("act").lower(),
        "reward_points": 1,
        "reward_type": "nosuch",
    }
    answer = await tasks.post("/v1/tasks", json=rule, headers=ADMIN)
    assert answer.status_code == 422 and "error" in answer.json()
    for body in (
        {"points": 5, "idempotency_key": unique("k"), "reason": "x", "asset": "nosuch"},
        {"points": -5, "idempotency_key": unique("k"), "reason": "x"},
        {"points": 5, "idempotency_key": unique("k"), "reason": "x", "asset": "Bad Code"},
    ):
        answer = await ledger.post(f"/v1/accounts/{user}/credits", json=body, headers=ADMIN)
        assert answer.status_code in (404, 422) and "error" in answer.json(), answer.text
    unknown = await tasks.post(
        f"/v1/orders/{unique('O')}/refunds", json={"refund_no": "R1"}, headers=ADMIN
    )
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    negative = await tasks.post(
        f"/v1/orders/{unique('O')}/refunds",
        json={"refund_no": "R1", "refund_amount_cents": -5},
        headers=ADMIN,
    )
    assert negative.status_code == 422
    assert await entries(ledger, user) == []
    assert (await reconciliation(ledger))["ok"]
