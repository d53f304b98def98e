"""The whole loop a user lives through: behave, earn, redeem, change their mind, get it back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.auth import issue_user_token
from shared.settings import DEV_JWT_SECRET
from tests.conftest import envelope, unique
from tests.integration.helpers import (
    balance,
    create_item,
    create_task,
    entries,
    exchange_reconciliation,
    get_item,
    reconciliation,
    redeem,
    send,
    wait_for_balance,
)

pytestmark = pytest.mark.integration


async def test_behavior_to_points_to_redemption_to_cancel_and_refund(http) -> None:
    sensor, tasks = http("behavior_sensor"), http("task_progress")
    ledger, exchange = http("rewards_ledger"), http("exchange")
    user = unique("journey")
    action = unique("review").lower()
    await create_task(tasks, action=action, reward_points=37, period="day", max_per_period=10)
    now = datetime.now(UTC).isoformat()
    await send(sensor, [envelope(user, action, now) for _ in range(3)])
    await wait_for_balance(ledger, user, 111)

    item = await create_item(exchange, type="physical", points_price=78, stock=1)
    me = {"Authorization": f"Bearer {issue_user_token(DEV_JWT_SECRET, user)}"}
    options = (await exchange.get(f"/v1/users/{user}/quick-options", headers=me)).json()
    # one-click options (the recommender's picks first, so not necessarily this new item):
    # each affordable and within 0.3-1.0x of the balance
    prices = [o["item"]["points_price"] for o in options["options"]]
    assert prices and all(33 <= price <= 111 for price in prices), options

    bought = await redeem(exchange, user, item["id"], headers=me, shipping_address="2 Lane")
    assert bought.status_code == 201, bought.text
    assert bought.json()["balance_after"] == 33
    assert await balance(ledger, user) == 33
    assert (await get_item(exchange, item["id"]))["stock"] == 0
    sold_out = await redeem(exchange, user, item["id"], headers=me)
    assert sold_out.status_code == 409 and sold_out.json()["error"] == "out_of_stock"

    cancelled = await exchange.post(
        f"/v1/redemptions/{bought.json()['id']}/cancel", json={"reason": "oops"}, headers=me
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert await balance(ledger, user) == 111
    assert (await get_item(exchange, item["id"]))["stock"] == 1
    kinds = [e["kind"] for e in await entries(ledger, user)]
    assert sorted(kinds) == ["credit", "credit", "credit", "debit", "refund"]
    assert (await reconciliation(ledger))["ok"]
    assert (await exchange_reconciliation(exchange))["ok"]
