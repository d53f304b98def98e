"""Every endpoint answers bad input with a 4xx JSON error {"error", "message"} and changes nothing."""

from __future__ import annotations

import pytest

from shared.auth import issue_user_token
from shared.settings import DEV_JWT_SECRET
from tests.conftest import ADMIN, INGEST, unique
from tests.integration.helpers import balance, create_item, get_item

pytestmark = pytest.mark.integration

GOOD_EVENT = {
    "event_id": "x1",
    "source": "app",
    "user_id": "u1",
    "action": "like",
    "occurred_at": "2026-11-22T10:00:00+08:00",
    "attributes": {},
}
GOOD_TASK = {"name": "t", "action": "like", "reward_points": 1}
GOOD_ITEM = {"name": "i", "category": "c", "type": "virtual", "points_price": 5, "stock": 1}
GOOD_REDEMPTION = {"user_id": "u1", "item_id": "no-such-item", "idempotency_key": "k1"}

CASES = [
    # (service, method, path, headers, body, expected status)
    ("behavior_sensor", "POST", "/v1/events", INGEST, b"{not json", 422),
    ("behavior_sensor", "POST", "/v1/events", INGEST, [1, 2], 422),
    (
        "behavior_sensor",
        "POST",
        "/v1/events",
        INGEST,
        {**GOOD_EVENT, "occurred_at": "yesterday"},
        422,
    ),
    (
        "behavior_sensor",
        "POST",
        "/v1/events",
        INGEST,
        {**GOOD_EVENT, "occurred_at": "2026-11-22T10:00:00"},
        422,
    ),
    ("behavior_sensor", "POST", "/v1/events", INGEST, {**GOOD_EVENT, "action": "Like!"}, 422),
    # the ends of Python's datetime range (fuzzer findings: each was a 500)
    (
        "behavior_sensor",
        "POST",
        "/v1/events",
        INGEST,
        {**GOOD_EVENT, "occurred_at": "0001-01-01T00:00:00+14:00"},
        422,
    ),
    (
        "rewards_ledger",
        "POST",
        "/v1/accounts/u1/credits",
        ADMIN,
        {"points": 5, "reason": "r", "idempotency_key": "far", "expires_at": "9999-12-31T23:00Z"},
        422,
    ),
    (
        "task_progress",
        "POST",
        "/v1/tasks",
        ADMIN,
        {**GOOD_TASK, "starts_at": "0001-01-01T00:00Z"},
        422,
    ),
    ("task_progress", "GET", "/v1/users/u1/checkins?month=0000-01", ADMIN, None, 422),
    ("task_progress", "GET", "/v1/users/u1/checkins?month=9999-12", ADMIN, None, 422),
    ("insights", "GET", "/v1/kpis?from=0001-01-01&to=0001-01-02", ADMIN, None, 422),
    ("exchange", "POST", "/v1/items", ADMIN, {**GOOD_ITEM, "ends_at": "9999-12-31T23:59Z"}, 422),
    ("behavior_sensor", "POST", "/v1/events", INGEST, {**GOOD_EVENT, "user_id": ""}, 422),
    ("behavior_sensor", "POST", "/v1/events", INGEST, {**GOOD_EVENT, "event_id": "x" * 129}, 422),
    ("behavior_sensor", "POST", "/v1/events", INGEST, {**GOOD_EVENT, "unknown": 1}, 422),
    ("behavior_sensor", "POST", "/v1/events", INGEST, {"events": []}, 422),
    ("behavior_sensor", "POST", "/v1/events", INGEST, {"events": [GOOD_EVENT] * 1001}, 422),
    (
        "behavior_sensor",
        "POST",
        "/v1/events",
        INGEST,
        {"events": [GOOD_EVENT, {"event_id": "x"}]},
        422,
    ),
    ("behavior_sensor", "POST", "/v1/events", {}, GOOD_EVENT, 401),
    ("behavior_sensor", "POST", "/v1/events", {"X-Api-Key": "wrong"}, GOOD_EVENT, 401),
    ("behavior_sensor", "GET", "/v1/diverted?limit=0", ADMIN, None, 422),
    # found by a first fuzzing pass: both answered 500
    ("behavior_sensor", "GET", "/v1/diverted?user_id=%00", ADMIN, None, 422),
    ("task_progress", "GET", "/v1/tasks?offset=9223372036854775809", ADMIN, None, 422),
    ("rewards_ledger", "GET", "/v1/accounts/a%00b", ADMIN, None, 422),
    ("task_progress", "POST", "/v1/tasks", ADMIN, {**GOOD_TASK, "reward_points": 0}, 422),
    ("task_progress", "POST", "/v1/tasks", ADMIN, {**GOOD_TASK, "period": "fortnight"}, 422),
    ("task_progress", "POST", "/v1/tasks", ADMIN, {**GOOD_TASK, "kind": "amount_ratio"}, 422),
    (
        "task_progress",
        "POST",
        "/v1/tasks",
        ADMIN,
        {**GOOD_TASK, "conditions": [{"attribute": "a", "op": "~", "value": 1}]},
        422,
    ),
    (
        "task_progress",
        "POST",
        "/v1/tasks",
        ADMIN,
        {**GOOD_TASK, "starts_at": "2026-12-01T00:00:00Z", "ends_at": "2026-11-01T00:00:00Z"},
        422,
    ),
    ("task_progress", "POST", "/v1/tasks", {}, GOOD_TASK, 401),
    ("task_progress", "POST", "/v1/tasks", INGEST, GOOD_TASK, 403),
    ("task_progress", "GET", "/v1/tasks/does-not-exist", ADMIN, None, 404),
    ("task_progress", "PATCH", "/v1/tasks/does-not-exist", ADMIN, {"active": False}, 404),
    ("task_progress", "PATCH", "/v1/tasks/x", ADMIN, {"reward_points": "many"}, 422),
    ("task_progress", "GET", "/v1/tasks?limit=100000", ADMIN, None, 422),
    (
        "rewards_ledger",
        "POST",
        "/v1/accounts/u1/debits",
        ADMIN,
        {"points": -5, "idempotency_key": "k"},
        422,
    ),
    ("rewards_ledger", "POST", "/v1/accounts/u1/debits", ADMIN, {"points": 5}, 422),
    ("rewards_ledger", "POST", "/v1/accounts/u1/debits", ADMIN, b"[", 422),
    (
        "rewards_ledger",
        "POST",
        "/v1/accounts/u1/debits",
        ADMIN,
        {"points": 5, "idempotency_key": "k"},
        409,
    ),
    (
        "rewards_ledger",
        "POST",
        "/v1/accounts/u1/credits",
        ADMIN,
        {"points": 5, "idempotency_key": "k"},
        422,
    ),
    (
        "rewards_ledger",
        "POST",
        "/v1/accounts/u1/credits",
        ADMIN,
        {"points": 5, "idempotency_key": "k", "reason": "r", "validity_days": 0},
        422,
    ),
    ("rewards_ledger", "GET", "/v1/accounts/u1/entries?limit=-1", ADMIN, None, 422),
    ("rewards_ledger", "GET", "/v1/accounts/u1/entries?before_id=abc", ADMIN, None, 422),
    ("rewards_ledger", "GET", "/v1/accounts/u1", {}, None, 401),
    ("rewards_ledger", "GET", "/v1/accounts/u1", {"Authorization": "Bearer not-a-jwt"}, None, 401),
    ("rewards_ledger", "GET", "/v1/reconciliation", INGEST, None, 403),
    ("rewards_ledger", "GET", "/v1/no-such-route", ADMIN, None, 404),
    ("rewards_ledger", "POST", "/v1/accounts/u1/refunds", ADMIN, {"reason": "r"}, 422),
    (
        "rewards_ledger",
        "POST",
        "/v1/accounts/u1/refunds",
        ADMIN,
        {"debit_idempotency_key": "has space"},
        422,
    ),
    (
        "rewards_ledger",
        "POST",
        "/v1/accounts/u1/refunds",
        INGEST,
        {"debit_idempotency_key": "k"},
        403,
    ),
    ("exchange", "POST", "/v1/items", ADMIN, {**GOOD_ITEM, "points_price": 0}, 422),
    ("exchange", "POST", "/v1/items", ADMIN, {**GOOD_ITEM, "stock": -1}, 422),
    ("exchange", "POST", "/v1/items", ADMIN, {**GOOD_ITEM, "type": "nft"}, 422),
    ("exchange", "POST", "/v1/items", ADMIN, {**GOOD_ITEM, "type": "vip"}, 422),
    ("exchange", "POST", "/v1/items", ADMIN, {**GOOD_ITEM, "image_url": "ftp://x"}, 422),
    ("exchange", "POST", "/v1/items", ADMIN, {**GOOD_ITEM, "tags": [""]}, 422),
    (
        "exchange",
        "POST",
        "/v1/items",
        ADMIN,
        {**GOOD_ITEM, "per_user_limit": {"period": "week", "quantity": 1}},
        422,
    ),
    (
        "exchange",
        "POST",
        "/v1/items",
        ADMIN,
        {**GOOD_ITEM, "starts_at": "2026-12-01T00:00:00Z", "ends_at": "2026-11-01T00:00:00Z"},
        422,
    ),
    ("exchange", "POST", "/v1/items", ADMIN, {**GOOD_ITEM, "surprise": True}, 422),
    ("exchange", "POST", "/v1/items", {}, GOOD_ITEM, 401),
    ("exchange", "POST", "/v1/items", INGEST, GOOD_ITEM, 403),
    ("exchange", "GET", "/v1/items?limit=0", {}, None, 422),
    ("exchange", "GET", "/v1/items?affordable_for=-3", {}, None, 422),
    ("exchange", "GET", "/v1/items?type=nft", {}, None, 422),
    ("exchange", "GET", "/v1/items/nope", {}, None, 404),
    ("exchange", "PATCH", "/v1/items/nope", ADMIN, {"stock": 3}, 404),
    ("exchange", "PATCH", "/v1/items/nope", ADMIN, {}, 422),
    ("exchange", "DELETE", "/v1/items/nope", ADMIN, None, 404),
    ("exchange", "DELETE", "/v1/items/nope", {}, None, 401),
    ("exchange", "PATCH", "/v1/items/nope", ADMIN, {"name": None}, 422),
    ("exchange", "POST", "/v1/redemptions", ADMIN, {**GOOD_REDEMPTION, "quantity": 0}, 422),
    ("exchange", "POST", "/v1/redemptions", ADMIN, {**GOOD_REDEMPTION, "quantity": 101}, 422),
    ("exchange", "POST", "/v1/redemptions", ADMIN, {"user_id": "u1", "item_id": "i"}, 422),
    ("exchange", "POST", "/v1/redemptions", ADMIN, b"{", 422),
    ("exchange", "POST", "/v1/redemptions", ADMIN, GOOD_REDEMPTION, 404),
    ("exchange", "POST", "/v1/redemptions", {}, GOOD_REDEMPTION, 401),
    ("exchange", "POST", "/v1/redemptions", INGEST, GOOD_REDEMPTION, 403),
    ("exchange", "GET", "/v1/redemptions/nope", ADMIN, None, 404),
    ("exchange", "POST", "/v1/redemptions/nope/cancel", ADMIN, {}, 404),
    ("exchange", "POST", "/v1/redemptions/nope/cancel", ADMIN, {"reason": 5}, 422),
    ("exchange", "POST", "/v1/redemptions/nope/ship", ADMIN, {"carrier": "SF"}, 422),
    (
        "exchange",
        "POST",
        "/v1/redemptions/nope/ship",
        ADMIN,
        {"carrier": "SF", "tracking_number": "1"},
        404,
    ),
    ("exchange", "POST", "/v1/redemptions/nope/deliver", INGEST, {}, 403),
    ("exchange", "GET", "/v1/users/u1/redemptions?status=lost", ADMIN, None, 422),
    ("exchange", "GET", "/v1/users/u1/redemptions", {}, None, 401),
    ("exchange", "GET", "/v1/users/u1/quick-options", INGEST, None, 403),
    ("exchange", "GET", "/v1/reconciliation", {}, None, 401),
]


@pytest.mark.parametrize(("service", "method", "path", "headers", "body", "status"), CASES)
async def test_bad_input_gets_a_4xx_json_error(
    http, service, method, path, headers, body, status
) -> None:
    client = http(service)
    kwargs: dict = {"headers": {"content-type": "application/json", **headers}}
    if isinstance(body, bytes):
        kwargs["content"] = body
    elif body is not None:
        kwargs["json"] = body
    response = await client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    payload = response.json()
    assert isinstance(payload["error"], str) and payload["error"]
    assert isinstance(payload["message"], str) and payload["message"]


async def test_a_rejected_batch_records_nothing(http) -> None:
    sensor = http("behavior_sensor")
    good = {**GOOD_EVENT, "event_id": unique("e")}
    response = await sensor.post(
        "/v1/events",
        json={"events": [good, {**good, "event_id": "", "user_id": "u"}]},
        headers=INGEST,
    )
    assert response.status_code == 422
    assert response.json()["details"]["errors"][0]["loc"][:2] == ["events", 1]
    again = await sensor.post("/v1/events", json=good, headers=INGEST)
    assert again.json() == {"accepted": 1, "duplicates": 0}  # the first attempt stored nothing


async def test_an_ingest_key_is_bound_to_its_sources_and_users_see_only_themselves(http) -> None:
    ledger = http("rewards_ledger")
    user = unique("u")
    mine = {"Authorization": f"Bearer {issue_user_token(DEV_JWT_SECRET, user)}"}
    assert (await ledger.get(f"/v1/accounts/{user}", headers=mine)).status_code == 200
    other = await ledger.get("/v1/accounts/someone-else", headers=mine)
    assert other.status_code == 403 and other.json()["error"] == "forbidden"
    debit = await ledger.post(
        f"/v1/accounts/{user}/debits", headers=mine, json={"points": 1, "idempotency_key": "k"}
    )
    assert debit.status_code == 403  # users cannot move points directly
    assert await balance(ledger, user) == 0


async def test_refused_redemptions_change_no_stock_and_no_points(http) -> None:
    exchange, ledger = http("exchange"), http("rewards_ledger")
    user = unique("careful")
    item = await create_item(exchange, points_price=5, stock=2)
    bad = [
        {"user_id": user, "item_id": item["id"], "quantity": -1, "idempotency_key": "a"},
        {"user_id": user, "item_id": item["id"], "quantity": 3, "idempotency_key": "b"},
        {"user_id": user, "item_id": item["id"], "idempotency_key": "c"},  # no points
    ]
    statuses = [
        (await exchange.post("/v1/redemptions", json=body, headers=ADMIN)).status_code
        for body in bad
    ]
    assert statuses == [422, 409, 409]
    assert (await get_item(exchange, item["id"]))["stock"] == 2
    assert await balance(ledger, user) == 0


async def test_nul_characters_and_huge_bodies_are_refused_before_the_database(http) -> None:
    """PostgreSQL cannot store NUL in text or jsonb, and a body of many megabytes is no
    request anyone means: both are refused (422, 413) by every service before a route runs,
    and nothing is recorded."""
    sensor, tasks, ledger = http("behavior_sensor"), http("task_progress"), http("rewards_ledger")
    user = unique("nul")
    json_type = {"content-type": "application/json"}
    event = {**GOOD_EVENT, "event_id": unique("e"), "user_id": user}
    nul_event = (
        b'{"event_id": "%s", "source": "app", "user_id": "%s", "action": "like", '
        % (
            event["event_id"].encode(),
            user.encode(),
        )
        + b'"occurred_at": "2026-11-22T10:00:00+08:00", "attributes": {"note": "a\\u0000b"}}'
    )
    refused = await sensor.post("/v1/events", content=nul_event, headers={**INGEST, **json_type})
    assert refused.status_code == 422 and "NUL" in refused.json()["message"]
    action = unique("nul_act").lower()
    task = b'{"name": "x\\u0000", "action": "%s", "reward_points": 1}' % action.encode()
    answer = await tasks.post("/v1/tasks", content=task, headers={**ADMIN, **json_type})
    assert answer.status_code == 422
    credit = b'{"points": 5, "reason": "r\\u0000", "idempotency_key": "%s"}' % unique("k").encode()
    answer = await ledger.post(
        f"/v1/accounts/{user}/credits", content=credit, headers={**ADMIN, **json_type}
    )
    assert answer.status_code == 422 and await balance(ledger, user) == 0
    # an escaped backslash followed by "u0000" is ordinary text, not a NUL; the same event id
    # is new to the sensor, so the refused one was not recorded
    literal = {**event, "attributes": {"note": "C:\\u0000"}}
    taken = await sensor.post("/v1/events", json=literal, headers=INGEST)
    assert taken.status_code == 202 and taken.json() == {"accepted": 1, "duplicates": 0}

    # bytes that are not JSON: 400 or 422, documented either way
    garbage = await tasks.post("/v1/tasks", content=b"\xff\xfe", headers={**ADMIN, **json_type})
    assert garbage.status_code in (400, 422) and garbage.json()["error"]

    huge = {"events": [{**GOOD_EVENT, "attributes": {"pad": "x" * 9_000_000}}]}
    too_big = await sensor.post("/v1/events", json=huge, headers=INGEST)
    assert too_big.status_code == 413 and too_big.json()["error"] == "payload_too_large"
