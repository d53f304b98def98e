"""Rules paying several assets and pending rewards; refunded orders taking back what they
earned - through the running suite (real PostgreSQL + broker)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from shared.events import stable_id
from tests.conftest import ADMIN, envelope, eventually, unique
from tests.integration.helpers import create_task, open_database, read_topic, send

pytestmark = pytest.mark.integration
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _for(user: str, kind: str):
    return lambda m: m.get("user_id") == user and m.get("type", "grant") == kind


async def test_a_rule_pays_its_extra_rewards_as_pending_grants(http, infra) -> None:
    sensor, tasks = http("behavior_sensor"), http("task_progress")
    action, user = unique("checkin"), unique("u")
    task = await create_task(
        tasks,
        action=action,
        reward_points=5,
        reward_type="growth",
        extra_rewards=[{"reward_type": "points", "amount": 3}],
        pending_days=7,
        period="day",
        max_per_period=1,
    )
    assert (task["reward_type"], task["pending_days"]) == ("growth", 7)
    assert task["extra_rewards"] == [{"reward_type": "points", "amount": 3}]
    at = datetime.now(SHANGHAI).replace(microsecond=0)
    await send(sensor, [envelope(user, action, at.isoformat())])

    grants = await read_topic(
        infra.kafka_bootstrap, "rewards.grants", 2, _for(user, "grant"), then_wait_ms=500
    )
    assert len(grants) == 2
    main = next(g for g in grants if g["asset"] == "growth")
    extra = next(g for g in grants if g["asset"] == "points")
    assert main["points"] == 5 and extra["points"] == 3
    assert extra["grant_id"] == stable_id("grant-extra", main["grant_id"], "points")
    for grant in grants:
        assert datetime.fromisoformat(grant["available_at"]) == at + timedelta(days=7)
        assert (grant["task_id"], grant["completion"]) == (task["id"], 1)

    mine = (await tasks.get(f"/v1/users/{user}/tasks", headers=ADMIN)).json()["items"]
    view = next(t for t in mine if t["task_id"] == task["id"])
    assert (view["reward_type"], view["points_earned"]) == ("growth", 5)
    assert view["extra_rewards"] == [{"reward_type": "points", "amount": 3}]


async def _order_rules(tasks, shop: str) -> None:
    only_this_shop = [{"attribute": "shop_id", "op": "==", "value": shop}]
    await create_task(  # 1 point per 10 yuan, plus 5 growth per order
        tasks,
        action="order_paid",
        kind="amount_ratio",
        amount_unit_cents=1000,
        reward_points=1,
        extra_rewards=[{"reward_type": "growth", "amount": 5}],
        period="lifetime",
        conditions=only_this_shop,
    )
    await create_task(  # big-order bonus
        tasks,
        action="order_paid",
        reward_points=20,
        period="lifetime",
        conditions=[*only_this_shop, {"attribute": "amount_cents", "op": ">=", "value": 10000}],
    )


def _order_message(order_no: str, user: str, shop: str, status: str, **more: Any) -> bytes:
    now_ms = int(datetime.now(SHANGHAI).timestamp() * 1000)
    body = {
        "orderNo": order_no,
        "buyerId": user,
        "orderStatus": status,
        "payAmount": "129.00",
        "paidTime": now_ms,
        "shopId": shop,
        **more,
    }
    return json.dumps(body).encode()


async def _order(tasks, order_no: str, **expect: Any) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        response = await tasks.get(f"/v1/orders/{order_no}", headers=ADMIN)
        assert response.status_code == 200, response.text
        order = response.json()
        assert {k: order[k] for k in expect} == expect, order
        return dict(order)

    return await eventually(check)


def _totals(clawbacks: list[dict[str, Any]], grants: dict[str, Any]) -> dict[tuple, int]:
    return {(grants[c["grant_id"]], c["asset"]): c["clawed_total"] for c in clawbacks}


async def test_refunds_claw_back_cumulative_totals_and_replays_change_nothing(
    http, producer, infra
) -> None:
    tasks = http("task_progress")
    shop, user, order_no = unique("shop"), unique("buyer"), unique("O")
    await _order_rules(tasks, shop)
    refunded_at = int(datetime.now(SHANGHAI).timestamp() * 1000)
    await producer.send_and_wait(
        "upstream.orders", _order_message(order_no, user, shop, "PAID"), key=user.encode()
    )
    order = await _order(tasks, order_no, paid_cents=12900, refunded_cents=0)
    order = await eventually(lambda: _has_grants(tasks, order_no, 3))
    kinds = {g["grant_id"]: g["points"] for g in order["grants"]}  # 12, 5 (growth) and 20
    assert sorted(kinds.values()) == [5, 12, 20]

    # Partial refund by the order system: 30 of 129 yuan.
    partial = _order_message(
        order_no,
        user,
        shop,
        "PARTIALLY_REFUNDED",
        refundNo="R1",
        refundAmount="30.00",
        refundTime=refunded_at,
    )
    await producer.send_and_wait("upstream.orders", partial, key=user.encode())
    order = await _order(tasks, order_no, refunded_cents=3000)
    expected_partial = {12: 2, 5: 1, 20: 4}  # floor(points * 3000 / 12900)
    assert {kinds[g["grant_id"]]: g["clawed_total"] for g in order["grants"]} == expected_partial

    # The rest, by operations: 99 yuan more, a full refund.
    response = await tasks.post(
        f"/v1/orders/{order_no}/refunds", json={"refund_no": "R2"}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    full = response.json()
    assert (full["paid_cents"], full["refunded_cents"]) == (12900, 12900)
    assert _totals(full["clawbacks"], kinds) == {
        (12, "points"): 12,
        (5, "growth"): 5,
        (20, "points"): 20,
    }

    # Replays: the same refund number by HTTP, the order system's message again.
    again = await tasks.post(
        f"/v1/orders/{order_no}/refunds", json={"refund_no": "R2"}, headers=ADMIN
    )
    assert again.status_code == 200, again.text
    assert again.json() == full
    await producer.send_and_wait("upstream.orders", partial, key=user.encode())

    clawbacks = await read_topic(
        infra.kafka_bootstrap, "rewards.grants", 6, _for(user, "clawback"), then_wait_ms=2000
    )
    assert len(clawbacks) == 6, clawbacks  # 3 for the partial refund, 3 for the rest
    assert len({c["clawback_id"] for c in clawbacks}) == 6
    by_grant: dict[int, list[int]] = {}
    for c in clawbacks:
        by_grant.setdefault(kinds[c["grant_id"]], []).append(c["clawed_total"])
        assert c["reason"].startswith(f"order {order_no} refunded")
    assert {k: sorted(v) for k, v in by_grant.items()} == {12: [2, 12], 5: [1, 5], 20: [4, 20]}
    refs = {c["reference"] for c in clawbacks}
    assert f"refund:{order_no}:R2" in refs and len(refs) == 2


async def _has_grants(tasks, order_no: str, count: int) -> dict[str, Any]:
    response = await tasks.get(f"/v1/orders/{order_no}", headers=ADMIN)
    assert response.status_code == 200, response.text
    order = response.json()
    assert len(order["grants"]) == count, order
    return dict(order)


async def test_a_refund_that_arrives_before_its_order_is_applied_when_the_order_comes(
    http, producer, infra
) -> None:
    tasks = http("task_progress")
    shop, user, order_no = unique("shop"), unique("buyer"), unique("O")
    await _order_rules(tasks, shop)
    now_ms = int(datetime.now(SHANGHAI).timestamp() * 1000)
    refund = _order_message(order_no, user, shop, "REFUNDED", refundTime=now_ms)
    await producer.send_and_wait("upstream.orders", refund, key=user.encode())
    await producer.send_and_wait(
        "upstream.orders", _order_message(order_no, user, shop, "PAID"), key=user.encode()
    )

    clawbacks = await read_topic(
        infra.kafka_bootstrap, "rewards.grants", 3, _for(user, "clawback"), then_wait_ms=1000
    )
    assert sorted(c["clawed_total"] for c in clawbacks) == [5, 12, 20]  # everything
    order = await _order(tasks, order_no, refunded_cents=12900)
    assert [r["refund_no"] for r in order["refunds"]] == ["full"]


async def test_refunds_of_unknown_orders_or_too_much_are_refused(http, producer, infra) -> None:
    tasks = http("task_progress")
    missing, refund_no = unique("O"), unique("R")
    response = await tasks.post(
        f"/v1/orders/{missing}/refunds", json={"refund_no": refund_no}, headers=ADMIN
    )
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found"
    assert (await tasks.get(f"/v1/orders/{missing}", headers=ADMIN)).status_code == 404
    async with open_database(infra.database_url, "jifen_task_progress") as db:
        async with db.read_only() as session:
            written = await session.execute(
                text("SELECT count(*) FROM order_refunds WHERE refund_no = :r"), {"r": refund_no}
            )
            assert written.scalar_one() == 0

    shop, user, order_no = unique("shop"), unique("buyer"), unique("O")
    await producer.send_and_wait(
        "upstream.orders", _order_message(order_no, user, shop, "PAID"), key=user.encode()
    )
    await _order(tasks, order_no, paid_cents=12900)
    for amount in (-1, 12901):
        response = await tasks.post(
            f"/v1/orders/{order_no}/refunds",
            json={"refund_no": "R1", "refund_amount_cents": amount},
            headers=ADMIN,
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "validation_error"
    await _order(tasks, order_no, refunded_cents=0, clawbacks=[])


async def test_rules_naming_an_unknown_asset_are_refused(http) -> None:
    tasks, ledger = http("task_progress"), http("rewards_ledger")
    if (await ledger.get("/v1/assets/points", headers=ADMIN)).status_code != 200:
        pytest.skip("ledger assets endpoint not yet built")
    action = unique("share")
    body = {"name": "n", "action": action, "reward_points": 1, "reward_type": "no_such_asset"}
    response = await tasks.post("/v1/tasks", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert "no_such_asset" in response.json()["message"]

    balloon = unique("balloon")
    defined = await ledger.post(
        "/v1/assets",
        json={"code": balloon, "name": "Balloons", "spendable": True, "expires": False},
        headers=ADMIN,
    )
    assert defined.status_code == 201, defined.text
    task = await create_task(tasks, action=action, reward_points=1, reward_type=balloon)
    assert task["reward_type"] == balloon
    extra = {"extra_rewards": [{"reward_type": "no_such_asset", "amount": 1}]}
    response = await tasks.patch(f"/v1/tasks/{task['id']}", json=extra, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert (await tasks.get(f"/v1/tasks/{task['id']}", headers=ADMIN)).json()["extra_rewards"] == []
    extra = {"extra_rewards": [{"reward_type": "growth", "amount": 2}]}
    response = await tasks.patch(f"/v1/tasks/{task['id']}", json=extra, headers=ADMIN)
    assert response.status_code == 200, response.text


async def test_an_unreachable_ledger_answers_503_for_assets_it_must_check(
    http, ledger_link
) -> None:
    tasks = http("task_progress")
    body = {"name": "n", "action": unique("share"), "reward_points": 1, "reward_type": "balloon"}
    ledger_link.set_mode("refuse")
    try:
        response = await tasks.post("/v1/tasks", json=body, headers=ADMIN)
        # built-in assets need no ledger
        await create_task(tasks, **{**body, "reward_type": "growth"})
    finally:
        ledger_link.set_mode("pass")
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "ledger_unavailable"
