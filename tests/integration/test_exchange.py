"""The points mall against the running suite: redemption, limits, concurrency, refunds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer

from shared.auth import issue_user_token
from shared.settings import DEV_JWT_SECRET
from tests.conftest import ADMIN, eventually, unique
from tests.integration.helpers import (
    balance,
    create_item,
    credit,
    entries,
    exchange_reconciliation,
    get_item,
    reconciliation,
    redeem,
    redemption,
    settled,
)

pytestmark = pytest.mark.integration


def as_user(user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_user_token(DEV_JWT_SECRET, user_id)}"}


async def test_the_catalog_lists_filters_and_pages_available_items(http) -> None:
    exchange = http("exchange")
    category = unique("cat")
    cheap = await create_item(exchange, category=category, points_price=10, tags=["a"])
    mid = await create_item(exchange, category=category, points_price=50, type="coupon")
    dear = await create_item(exchange, category=category, points_price=90)
    hidden = await create_item(exchange, category=category, points_price=20, active=False)
    later = await create_item(
        exchange,
        category=category,
        points_price=30,
        starts_at=(datetime.now(UTC) + timedelta(days=1)).isoformat(),
    )

    async def listing(**params) -> dict:
        response = await exchange.get("/v1/items", params={"category": category, **params})
        assert response.status_code == 200, response.text
        return response.json()

    page = await listing()
    assert [i["id"] for i in page["items"]] == [cheap["id"], mid["id"], dear["id"]]
    assert page["total"] == 3
    assert [i["id"] for i in (await listing(affordable_for=50))["items"]] == [cheap["id"], mid["id"]]
    assert [i["id"] for i in (await listing(type="coupon"))["items"]] == [mid["id"]]
    assert [i["id"] for i in (await listing(tag="a"))["items"]] == [cheap["id"]]
    first = await listing(limit=2)
    assert first["next_offset"] == 2 and len(first["items"]) == 2
    rest = await listing(limit=2, offset=2)
    assert [i["id"] for i in rest["items"]] == [dear["id"]] and rest["next_offset"] is None

    # Admins can see everything; the public cannot ask to.
    assert (await exchange.get("/v1/items", params={"include_unavailable": True})).status_code == 401
    everything = await exchange.get(
        "/v1/items", params={"category": category, "include_unavailable": True}, headers=ADMIN
    )
    ids = {i["id"] for i in everything.json()["items"]}
    assert {hidden["id"], later["id"]} <= ids

    # Restock and take off sale.
    patched = await exchange.patch(
        f"/v1/items/{dear['id']}", json={"stock": 150, "points_price": 95}, headers=ADMIN
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["stock"] == 150 and patched.json()["stock_total"] == 150
    assert (await exchange.delete(f"/v1/items/{dear['id']}", headers=ADMIN)).json()["active"] is False
    assert [i["id"] for i in (await listing())["items"]] == [cheap["id"], mid["id"]]


async def test_a_coupon_redemption_debits_once_and_replays_the_same_answer(http, infra) -> None:
    exchange, ledger = http("exchange"), http("rewards_ledger")
    user = unique("buyer")
    await credit(ledger, user, 100)
    item = await create_item(
        exchange, type="coupon", points_price=30, stock=5, coupon_value_cents=500
    )
    key = unique("click")

    first = await redeem(exchange, user, item["id"], key, headers=as_user(user))
    assert first.status_code == 201, first.text
    done = first.json()
    assert done["status"] == "completed"
    assert done["points"] == 30 and done["balance_after"] == 70
    [code] = done["reward"]["codes"]
    assert code.startswith("JF-") and done["reward"]["value_cents"] == 500

    again = await redeem(exchange, user, item["id"], key, headers=as_user(user))
    assert again.status_code == 200
    assert again.json()["id"] == done["id"] and again.json()["reward"] == done["reward"]
    assert await balance(ledger, user) == 70
    debits = [e for e in await entries(ledger, user) if e["kind"] == "debit"]
    assert len(debits) == 1 and debits[0]["reference"] == f"redemption:{done['id']}"
    assert (await get_item(exchange, item["id"]))["stock"] == 4

    other = await create_item(exchange, points_price=5)
    reused = await redeem(exchange, user, other["id"], key, headers=as_user(user))
    assert reused.status_code == 409 and reused.json()["error"] == "idempotency_key_reused"

    # Someone else cannot redeem on this user's behalf.
    stranger = await redeem(exchange, user, item["id"], headers=as_user(unique("other")))
    assert stranger.status_code == 403

    listed = await exchange.get(f"/v1/users/{user}/redemptions", headers=as_user(user))
    assert [r["id"] for r in listed.json()["items"]] == [done["id"]]

    events = await _exchange_events(infra, done["id"], 1)
    assert events[0]["type"] == "redemption.completed"
    assert events[0]["reward"]["codes"] == [code]


async def _exchange_events(infra, redemption_id: str, count: int) -> list[dict]:
    import json

    consumer = AIOKafkaConsumer(
        "exchange.events",
        bootstrap_servers=infra.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[dict] = []
    try:

        async def check() -> list[dict]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    event = json.loads(record.value)
                    if event["redemption_id"] == redemption_id:
                        found.append(event)
            assert len(found) >= count, found
            return found

        return await eventually(check, 30)
    finally:
        await consumer.stop()


async def test_vip_days_extend_an_active_membership(http) -> None:
    exchange, ledger = http("exchange"), http("rewards_ledger")
    user = unique("vip")
    await credit(ledger, user, 100)
    item = await create_item(exchange, type="vip", points_price=20, vip_days=7)
    first = (await redeem(exchange, user, item["id"])).json()
    second = (await redeem(exchange, user, item["id"])).json()
    start = datetime.fromisoformat(first["reward"]["vip_until"])
    end = datetime.fromisoformat(second["reward"]["vip_until"])
    assert start - datetime.now(UTC) > timedelta(days=6, hours=23)
    assert end - start == timedelta(days=7)


async def test_a_physical_item_goes_through_fulfilment_and_the_user_may_cancel_before_shipping(
    http,
) -> None:
    exchange, ledger = http("exchange"), http("rewards_ledger")
    user = unique("shopper")
    await credit(ledger, user, 500)
    item = await create_item(exchange, type="physical", points_price=100, stock=10)
    mine = as_user(user)

    kept = (await redeem(exchange, user, item["id"], headers=mine, shipping_address="1 Road")).json()
    assert kept["fulfilment"]["status"] == "pending"
    early = await exchange.post(f"/v1/redemptions/{kept['id']}/deliver", json={}, headers=ADMIN)
    assert early.status_code == 409 and early.json()["error"] == "invalid_transition"
    shipped = await exchange.post(
        f"/v1/redemptions/{kept['id']}/ship",
        json={"carrier": "SF", "tracking_number": "SF123"},
        headers=ADMIN,
    )
    assert shipped.json()["fulfilment"] == {
        "status": "shipped",
        "shipping_address": "1 Road",
        "carrier": "SF",
        "tracking_number": "SF123",
    }
    late = await exchange.post(f"/v1/redemptions/{kept['id']}/cancel", json={}, headers=mine)
    assert late.status_code == 409 and late.json()["error"] == "not_cancellable"
    delivered = await exchange.post(
        f"/v1/redemptions/{kept['id']}/deliver", json={}, headers=ADMIN
    )
    assert delivered.json()["fulfilment"]["status"] == "delivered"

    dropped = (await redeem(exchange, user, item["id"], headers=mine)).json()
    assert await balance(ledger, user) == 300
    cancelled = await exchange.post(
        f"/v1/redemptions/{dropped['id']}/cancel", json={"reason": "changed my mind"}, headers=mine
    )
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "cancelled" and body["cancelled_by"] == "user"
    assert body["fulfilment"]["status"] == "cancelled" and body["refund_entry_id"]
    assert await balance(ledger, user) == 400
    assert (await get_item(exchange, item["id"]))["stock"] == 9
    # Cancelling again changes nothing.
    repeat = await exchange.post(f"/v1/redemptions/{dropped['id']}/cancel", json={}, headers=mine)
    assert repeat.status_code == 200 and repeat.json()["refund_entry_id"] == body["refund_entry_id"]
    assert await balance(ledger, user) == 400
    assert [e["kind"] for e in await entries(ledger, user)].count("refund") == 1
