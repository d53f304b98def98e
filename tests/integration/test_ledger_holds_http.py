"""Holds through the running ledger's HTTP API: 200 concurrent holds on one user never reserve
more than the balance; captures and voids sent twice at once settle each hold once; the
ledger's own sweeper voids a hold at its deadline; reconciliation is clean after it all."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN, eventually, unique
from tests.integration.helpers import credit, entries, reconciliation

pytestmark = pytest.mark.integration


async def _hold(
    ledger: httpx.AsyncClient, user: str, points: int, key: str, expires_in_s: int = 600
) -> httpx.Response:
    body = {
        "user_id": user,
        "points": points,
        "idempotency_key": key,
        "expires_in_s": expires_in_s,
        "reference": f"order:{key}",
    }
    return await ledger.post("/v1/holds", json=body, headers=ADMIN)


async def _account(ledger: httpx.AsyncClient, user: str) -> dict[str, Any]:
    response = await ledger.get(f"/v1/accounts/{user}", headers=ADMIN)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_200_concurrent_holds_on_one_user_never_reserve_more_than_the_balance(
    http,
) -> None:
    ledger = http("rewards_ledger")
    user = unique("hold_race")
    await credit(ledger, user, 1000)

    answers = await asyncio.gather(*(_hold(ledger, user, 7, f"{user}:{i}") for i in range(200)))

    assert Counter(r.status_code for r in answers) == {201: 142, 409: 58}  # 142 * 7 = 994
    assert {r.json()["error"] for r in answers if r.status_code == 409} == {"insufficient_points"}
    account = await _account(ledger, user)
    assert (account["balance"], account["held"]) == (6, 994)
    placed = [i for i, r in enumerate(answers) if r.status_code == 201]

    # every request retried at once: the placed holds replay as they were, the others are
    # still refused, nothing more is reserved
    retries = await asyncio.gather(*(_hold(ledger, user, 7, f"{user}:{i}") for i in range(200)))
    assert [r.status_code for r in retries] == [
        200 if r.status_code == 201 else 409 for r in answers
    ]
    assert all(retries[i].json() == answers[i].json() for i in placed)

    # each hold settled by two identical requests at once: even ones captured in part, odd
    # ones voided
    async def settle(i: int) -> httpx.Response:
        hold_id = answers[i].json()["id"]
        if i % 2 == 0:
            body: dict[str, Any] = {"points": 5, "idempotency_key": f"{user}:pay:{i}"}
            return await ledger.post(f"/v1/holds/{hold_id}/capture", json=body, headers=ADMIN)
        body = {"idempotency_key": f"{user}:cancel:{i}"}
        return await ledger.post(f"/v1/holds/{hold_id}/void", json=body, headers=ADMIN)

    settled = await asyncio.gather(*(settle(i) for i in placed for _ in range(2)))

    assert {r.status_code for r in settled} == {200}
    pairs = [(settled[2 * k].json(), settled[2 * k + 1].json()) for k in range(len(placed))]
    assert all(a == b for a, b in pairs)
    captured = [i for i in placed if i % 2 == 0]
    assert all(
        (a["status"], a["captured"], a["released"]) == ("captured", 5, 2)
        if i % 2 == 0
        else (a["status"], a["captured"], a["released"]) == ("voided", 0, 7)
        for i, (a, _) in zip(placed, pairs, strict=True)
    )
    account = await _account(ledger, user)
    assert (account["balance"], account["held"]) == (1000 - 5 * len(captured), 0)
    kinds = Counter(e["kind"] for e in await entries(ledger, user))
    assert kinds == {
        "adjustment": 1,
        "hold": len(placed),
        "debit": len(captured),
        "hold_void": len(placed) - len(captured),
    }
    report = await reconciliation(ledger)
    assert report["ok"], report["violations"]


async def test_a_hold_over_http_shows_on_the_account_and_settles_once(http) -> None:
    ledger = http("rewards_ledger")
    user = unique("hold_http")
    await credit(ledger, user, 100)
    key = unique("order")

    placed = await _hold(ledger, user, 60, key)
    replay = await _hold(ledger, user, 60, key)
    reused = await _hold(ledger, user, 61, key)
    too_long = await _hold(ledger, user, 1, unique("order"), expires_in_s=90 * 86400)

    assert (placed.status_code, replay.status_code) == (201, 200)
    assert replay.json() == placed.json()
    assert (reused.status_code, reused.json()["error"]) == (409, "idempotency_key_reused")
    assert too_long.status_code == 422
    hold = placed.json()
    account = await _account(ledger, user)
    assert (account["balance"], account["held"]) == (40, 60)
    balances = (await ledger.get(f"/v1/accounts/{user}/balances", headers=ADMIN)).json()
    points = next(b for b in balances["items"] if b["asset"] == "points")
    assert (points["balance"], points["held"]) == (40, 60)
    assert (await ledger.get(f"/v1/holds/{hold['id']}", headers=ADMIN)).json() == hold
    listed = (await ledger.get(f"/v1/accounts/{user}/holds", headers=ADMIN)).json()["items"]
    assert [h["id"] for h in listed] == [hold["id"]]
    missing = await ledger.get("/v1/holds/00000000-0000-4000-8000-000000000000", headers=ADMIN)
    assert missing.status_code == 404

    pay = {"points": 25, "idempotency_key": unique("pay")}
    first = await ledger.post(f"/v1/holds/{hold['id']}/capture", json=pay, headers=ADMIN)
    again = await ledger.post(f"/v1/holds/{hold['id']}/capture", json=pay, headers=ADMIN)
    void = await ledger.post(
        f"/v1/holds/{hold['id']}/void", json={"idempotency_key": unique("c")}, headers=ADMIN
    )

    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json() == again.json()
    assert (first.json()["captured"], first.json()["released"]) == (25, 35)
    assert (void.status_code, void.json()["error"]) == (409, "invalid_transition")
    account = await _account(ledger, user)
    assert (account["balance"], account["held"]) == (75, 0)
    [capture, held] = (await entries(ledger, user))[:2]
    assert (capture["kind"], capture["amount"], capture["held_delta"]) == ("debit", -25, -60)
    assert (held["kind"], held["amount"], held["held_delta"]) == ("hold", 0, 60)
    # the capture is a debit under the caller's key: a refund gives it back
    refund = await ledger.post(
        f"/v1/accounts/{user}/refunds",
        json={"debit_idempotency_key": pay["idempotency_key"]},
        headers=ADMIN,
    )
    assert refund.status_code == 201 and refund.json()["points"] == 25
    assert (await _account(ledger, user))["balance"] == 100


async def test_the_running_ledger_voids_a_hold_at_its_deadline(http) -> None:
    ledger = http("rewards_ledger")
    user = unique("hold_deadline")
    await credit(ledger, user, 10)
    hold = (await _hold(ledger, user, 10, unique("order"), expires_in_s=1)).json()

    async def voided() -> None:
        view = (await ledger.get(f"/v1/holds/{hold['id']}", headers=ADMIN)).json()
        assert (view["status"], view["closed_by"]) == ("voided", "deadline")

    await eventually(voided, 30)
    account = await _account(ledger, user)
    assert (account["balance"], account["held"]) == (10, 0)
    pay = {"idempotency_key": unique("pay")}
    late = await ledger.post(f"/v1/holds/{hold['id']}/capture", json=pay, headers=ADMIN)
    assert (late.status_code, late.json()["error"]) == (409, "invalid_transition")
