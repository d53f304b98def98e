from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from aiohttp import web

from services.behavior_sensor.adapters import EnvelopeAdapter, OrderPaidAdapter
from services.behavior_sensor.domain import FarmingLimits
from services.behavior_sensor.enrichment import HttpEnricher
from services.devstack import free_port
from shared.messaging import PoisonMessage


def order(**overrides) -> bytes:
    body = {
        "orderNo": "O1",
        "buyerId": "u1",
        "orderStatus": "PAID",
        "payAmount": "129.005",
        "paidTime": 1763776800000,
        "shopId": "s1",
        "items": [{}, {}],
    }
    return json.dumps({**body, **overrides}).encode()


def test_an_order_paid_message_becomes_order_paid_with_amount_cents() -> None:
    [env] = OrderPaidAdapter().to_envelopes(order())
    assert (env.source, env.event_id, env.user_id, env.action) == (
        "order_system",
        "O1",
        "u1",
        "order_paid",
    )
    assert env.attributes == {
        "amount_cents": 12901,
        "currency": "CNY",
        "item_count": 2,
        "shop_id": "s1",
    }
    assert env.occurred_at.tzinfo is not None


def test_orders_that_are_not_paid_are_ignored_and_broken_ones_are_poison() -> None:
    assert OrderPaidAdapter().to_envelopes(order(orderStatus="CREATED")) == []
    for bad in (
        b"{",
        order(payAmount="abc"),
        order(buyerId=""),
        order(paidTime=None),
        order(payAmount=-1),
    ):
        with pytest.raises(PoisonMessage):
            OrderPaidAdapter().to_envelopes(bad)


def test_a_refund_becomes_order_refunded_keyed_by_its_refund_number() -> None:
    [env] = OrderPaidAdapter().to_envelopes(
        order(
            orderStatus="partially_refunded",
            refundNo="R7",
            refundAmount="30.5",
            refundTime="2026-11-23T10:00:00+08:00",
        )
    )
    assert (env.source, env.event_id, env.user_id, env.action) == (
        "order_system",
        "O1:refund:R7",
        "u1",
        "order_refunded",
    )
    assert env.attributes == {"order_no": "O1", "refund_no": "R7", "refund_amount_cents": 3050}
    assert env.occurred_at == datetime(2026, 11, 23, 2, tzinfo=UTC)


def test_a_refund_without_number_or_amount_is_the_full_order() -> None:
    [env] = OrderPaidAdapter().to_envelopes(order(orderStatus="REFUNDED", refundTime=1763863200000))
    assert env.event_id == "O1:refund:full"
    assert env.attributes == {"order_no": "O1", "refund_no": "full", "refund_amount_cents": 12901}
    assert env.occurred_at == datetime.fromtimestamp(1763863200, UTC)


def test_broken_refunds_are_poison() -> None:
    at = {"orderStatus": "REFUNDED", "refundTime": 1763863200000}
    for bad in (
        order(orderStatus="REFUNDED"),  # no refundTime
        order(**{**at, "refundTime": "2026-11-23T10:00:00"}),  # no timezone
        order(**at, refundAmount="-1"),
        order(**at, refundAmount="abc"),
        order(**at, refundAmount="129.01"),  # more than payAmount 129.005
        order(**at, orderNo="O" * 120, refundNo="R" * 20),  # event_id too long
    ):
        with pytest.raises(PoisonMessage):
            OrderPaidAdapter().to_envelopes(bad)
    [env] = OrderPaidAdapter().to_envelopes(order(**at, refundAmount="0"))
    assert env.attributes["refund_amount_cents"] == 0


def test_envelope_adapter_validates_the_contract() -> None:
    good = {
        "event_id": "1",
        "source": "app",
        "user_id": "u",
        "action": "like",
        "occurred_at": "2026-11-22T10:00:00Z",
    }
    assert len(EnvelopeAdapter().to_envelopes(json.dumps([good, good]).encode())) == 2
    with pytest.raises(PoisonMessage):
        EnvelopeAdapter().to_envelopes(
            json.dumps({**good, "occurred_at": "2026-11-22T10:00:00"}).encode()
        )
    with pytest.raises(PoisonMessage):
        EnvelopeAdapter().to_envelopes(b"\xff\xfe")


def test_farming_limit_admits_up_to_the_limit_per_window() -> None:
    from datetime import UTC, datetime, timedelta

    limits = FarmingLimits(default=None, per_action={"like": 2}, window_seconds=3600)
    counts: dict = {}
    t = datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert [limits.admit(counts, "u", "like", t) for _ in range(3)] == [True, True, False]
    assert limits.admit(counts, "u", "like", t + timedelta(hours=1))
    assert limits.admit(counts, "u", "comment", t)  # no limit configured for comments


async def test_http_enricher_retries_then_degrades_without_blocking() -> None:
    calls: list[web.Request] = []

    async def flaky(request: web.Request) -> web.Response:
        calls.append(request)
        if len(calls) == 1:
            return web.Response(status=503)
        payload = await request.json()
        return web.json_response({"results": [{"tier": "gold"} for _ in payload["behaviors"]]})

    app = web.Application()
    app.router.add_post("/x", flaky)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    enricher = HttpEnricher(f"http://127.0.0.1:{port}/x", retries=2)
    try:
        assert await enricher.enrich([{"user_id": "u"}, {"user_id": "v"}]) == [
            {"tier": "gold"},
            {"tier": "gold"},
        ]
        assert len(calls) == 2
    finally:
        await enricher.aclose()
        await runner.cleanup()

    # nobody listens: after its retries the behavior goes on, marked unavailable
    broken = HttpEnricher(f"http://127.0.0.1:{free_port()}/x", retries=1, timeout_s=0.5)
    try:
        assert await broken.enrich([{"user_id": "u"}]) == [{"status": "unavailable"}]
    finally:
        await broken.aclose()
