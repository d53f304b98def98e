"""Operations decide on behaviors the anti-farming limit diverted: a released one re-enters
the pipeline once and is credited; a rejected one never is."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ADMIN, INGEST, envelope, unique
from tests.integration.helpers import balance, create_task, send, wait_for_balance

pytestmark = pytest.mark.integration
ACTION = "farm_test_release"  # limited to 5 an hour in tests (tests/conftest.py)


@pytest.fixture(scope="module")
async def paying_rule(http) -> None:
    """One point per behavior of ACTION (the only rule on it)."""
    await create_task(http("task_progress"), action=ACTION, reward_points=1, period="lifetime")


async def _farmed(http, user: str, count: int) -> list[dict]:
    """Send `count` behaviors in one window; returns the diverted ones (count - 5)."""
    start = datetime.now(UTC).replace(minute=0, second=1, microsecond=0)  # one limit window
    events = [
        envelope(user, ACTION, (start + timedelta(seconds=i)).isoformat()) for i in range(count)
    ]
    await send(http("behavior_sensor"), events)
    await wait_for_balance(http("rewards_ledger"), user, 5)
    response = await http("behavior_sensor").get(
        "/v1/diverted", params={"user_id": user}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def _decide(http, decision: str, item: dict, **extra) -> tuple[int, dict]:
    body = {"source": item["source"], "event_id": item["event_id"], **extra}
    response = await http("behavior_sensor").post(
        f"/v1/diverted/{decision}", json=body, headers=ADMIN
    )
    return response.status_code, response.json()


async def test_a_released_behavior_is_credited_exactly_once(http, paying_rule) -> None:
    user = unique("rel")
    diverted = await _farmed(http, user, 7)
    assert len(diverted) == 2
    ledger = http("rewards_ledger")

    status, answer = await _decide(http, "release", diverted[0], note="false positive", by="ops:li")
    assert status == 200 and answer["status"] == "released" and answer["changed"] is True
    assert "ops:li" in answer["reason"] and "false positive" in answer["reason"]
    await wait_for_balance(ledger, user, 6)

    # released twice, in a race: nothing more is published or credited
    replies = await asyncio.gather(*(_decide(http, "release", diverted[0]) for _ in range(3)))
    assert all(s == 200 and a["changed"] is False for s, a in replies), replies
    await asyncio.sleep(1.5)
    assert await balance(ledger, user) == 6
    # it left the diverted list; the other one is still there
    left = await http("behavior_sensor").get(
        "/v1/diverted", params={"user_id": user}, headers=ADMIN
    )
    assert [i["event_id"] for i in left.json()["items"]] == [diverted[1]["event_id"]]


async def test_a_rejected_behavior_is_never_credited_and_cannot_be_released(
    http, paying_rule
) -> None:
    user = unique("rej")
    diverted = await _farmed(http, user, 6)
    assert len(diverted) == 1
    status, answer = await _decide(http, "reject", diverted[0], note="bot")
    assert status == 200 and answer["status"] == "rejected" and answer["changed"] is True
    assert (await _decide(http, "reject", diverted[0]))[1]["changed"] is False

    status, answer = await _decide(http, "release", diverted[0])
    assert status == 409 and answer["error"] == "invalid_transition"
    await asyncio.sleep(1.5)
    assert await balance(http("rewards_ledger"), user) == 5


async def test_decisions_refuse_bad_input_and_other_callers(http) -> None:
    sensor = http("behavior_sensor")
    unknown = {"source": "app", "event_id": unique("nope")}
    assert (
        await sensor.post("/v1/diverted/release", json=unknown, headers=ADMIN)
    ).status_code == 404
    assert (
        await sensor.post("/v1/diverted/reject", json={"source": "app"}, headers=ADMIN)
    ).status_code == 422
    assert (
        await sensor.post("/v1/diverted/release", json=unknown, headers=INGEST)
    ).status_code == 403

    # a behavior that was not diverted cannot be released
    event = envelope(unique("pub"), "like", datetime.now(UTC).isoformat())
    await send(sensor, [event])
    published = {"source": event["source"], "event_id": event["event_id"]}
    response = await sensor.post("/v1/diverted/release", json=published, headers=ADMIN)
    assert response.status_code == 409 and response.json()["error"] == "invalid_transition"
