"""The ledger's reports for the notifier: points expiring in a window (keyset pages over the
active lots) and the holders of more than a balance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ADMIN, unique
from tests.integration.helpers import credit

pytestmark = pytest.mark.integration


async def test_expiring_lots_page_through_the_window_in_user_and_time_order(http) -> None:
    ledger = http("rewards_ledger")
    user = unique("expiring_report")
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(days=200)
    for days, points in ((1, 10), (1, 5), (3, 20), (9, 40)):  # two lots at the same instant
        await credit(ledger, user, points, expires_at=(base + timedelta(days=days)).isoformat())
    spend = await ledger.post(
        f"/v1/accounts/{user}/debits",
        json={"points": 3, "idempotency_key": unique("spend"), "reason": "test"},
        headers=ADMIN,
    )
    assert spend.status_code in (200, 201), spend.text  # taken from the earliest lot first

    window = {"from": base.isoformat(), "to": (base + timedelta(days=7)).isoformat()}
    seen, cursor = [], {}
    for _ in range(10):
        page = await ledger.get(
            "/v1/reports/expiring-lots", params={**window, **cursor, "limit": 1}, headers=ADMIN
        )
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [i for i in body["items"] if i["user_id"] == user]
        if body["next"] is None:
            break
        cursor = {
            "after_user": body["next"]["user_id"],
            "after_expires_at": body["next"]["expires_at"],
        }
    # Same instant summed; the 3 spent points are gone; the day-9 lot is outside the window.
    assert [(i["points"]) for i in seen] == [12, 20]
    assert datetime.fromisoformat(seen[0]["expires_at"]) == base + timedelta(days=1)


async def test_holders_over_a_balance(http) -> None:
    ledger = http("rewards_ledger")
    rich, poor = unique("holder_rich"), unique("holder_poor")
    await credit(ledger, rich, 5000)
    await credit(ledger, poor, 10)
    found, after = [], ""
    for _ in range(1000):
        page = (
            await ledger.get(
                "/v1/reports/holders",
                params={"min_balance": 100, "after": after, "limit": 500},
                headers=ADMIN,
            )
        ).json()
        found += [i["user_id"] for i in page["items"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert rich in found and poor not in found
    assert found == sorted(found)


async def test_report_input_is_checked(http) -> None:
    ledger = http("rewards_ledger")
    now = datetime.now(UTC)
    cases = [
        {"from": now.isoformat(), "to": (now + timedelta(days=40)).isoformat()},
        {"from": now.isoformat(), "to": now.isoformat()},
        {"from": now.isoformat(), "to": (now + timedelta(days=1)).isoformat(), "after_user": "a"},
        {"from": "2026-12-01T00:00:00", "to": "2026-12-02T00:00:00"},  # no timezone
        {"from": now.isoformat(), "to": (now + timedelta(days=1)).isoformat(), "limit": 0},
    ]
    for params in cases:
        response = await ledger.get("/v1/reports/expiring-lots", params=params, headers=ADMIN)
        assert response.status_code == 422, (params, response.text)
        assert set(response.json()) >= {"error", "message"}
    anonymous = await ledger.get("/v1/reports/holders")
    assert anonymous.status_code == 401
