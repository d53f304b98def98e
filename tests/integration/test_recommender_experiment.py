"""The `recommender` experiment on the running suite: insights serves each user the recommender
of their arm (item_item or user_based, the shared assignment function), logs the exposure
once, and the results count the redemptions that followed, per arm, with their intervals.

The experiment is paused at the end, so the other tests' users get the default (item_item)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared.events import EXCHANGE_EVENTS, ExchangeEvent
from shared.experiments import assign
from tests.conftest import ADMIN, eventually, unique

pytestmark = pytest.mark.integration

KEY = "recommender"  # insights' recommender_experiment setting
ARMS = [("item_item", 1.0), ("user_based", 1.0)]


async def recommended(insights: httpx.AsyncClient, user: str) -> dict:
    response = await insights.get(f"/v1/users/{user}/recommendations", headers=ADMIN)
    assert response.status_code == 200, response.text
    return dict(response.json())


def redemption(user: str) -> ExchangeEvent:
    return ExchangeEvent(
        type="redemption.completed",
        redemption_id=uuid.uuid4().hex,
        user_id=user,
        item_id=unique("item"),
        item_type="virtual",
        quantity=1,
        points=100,
        status="completed",
        occurred_at=datetime.now(UTC),
    )


async def test_the_experiment_picks_each_users_recommender_and_measures_redemptions(
    http, producer: AIOKafkaProducer
) -> None:
    insights = http("insights")
    definition = {
        "key": KEY,
        "name": "item-item or user-based recommendations",
        "variants": [{"key": k, "weight": w} for k, w in ARMS],
        "metric": {"type": "conversion", "event": "redemption", "window_days": 7},
        "status": "running",
    }
    created = await insights.post("/v1/experiments", json=definition, headers=ADMIN)
    assert created.status_code in (200, 201), created.text
    running = await insights.patch(
        f"/v1/experiments/{KEY}", json={"status": "running"}, headers=ADMIN
    )
    assert running.status_code == 200, running.text
    try:
        users = [unique("arm") for _ in range(40)]

        async def experimenting() -> None:  # insights re-reads the experiment every few seconds
            assert (await recommended(insights, users[0]))["experiment"] == KEY

        await eventually(experimenting, timeout=30, interval=0.5)
        arms: dict[str, list[str]] = {"item_item": [], "user_based": []}
        for user in users:
            body = await recommended(insights, user)
            assert body["recommender"] == assign(KEY, user, ARMS), body
            assert body["experiment"] == KEY
            arms[body["recommender"]].append(user)
            await recommended(insights, user)  # shown again: still one exposure
        assert arms["item_item"] and arms["user_based"]

        # A third of each arm redeems after seeing its recommendations.
        converted = {arm: members[::3] for arm, members in arms.items()}
        for members in converted.values():
            for user in members:
                event = redemption(user)
                await producer.send(
                    EXCHANGE_EVENTS, event.model_dump_json().encode(), key=user.encode()
                )
        await producer.flush()

        async def measured() -> dict:
            response = await insights.get(f"/v1/experiments/{KEY}/results", headers=ADMIN)
            assert response.status_code == 200, response.text
            got = dict(response.json())
            by_arm = {v["key"]: v for v in got["variants"]}
            for arm, members in arms.items():
                assert by_arm[arm]["n"] == len(members), got
                assert by_arm[arm]["conversions"] == len(converted[arm]), got
            return got

        got = await eventually(measured, timeout=60, interval=1)
        assert got["control"] == "item_item" and got["test"] == "two_proportion_z"
        for variant in got["variants"]:
            rate = len(converted[variant["key"]]) / len(arms[variant["key"]])
            assert variant["rate"] == pytest.approx(rate)
            low, high = variant["ci"]
            assert low <= rate <= high
        [user_based] = [v for v in got["variants"] if v["key"] == "user_based"]
        assert user_based["p_value"] is not None and user_based["lift"] is not None
    finally:
        paused = await insights.patch(
            f"/v1/experiments/{KEY}", json={"status": "draft"}, headers=ADMIN
        )
        assert paused.status_code == 200, paused.text
