"""Services call the ledger with their own scoped credentials, not the admin token: each
is accepted for exactly the calls that service makes (issue 25)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.auth import issue_user_token
from shared.settings import DEV_JWT_SECRET, dev_service_token
from tests.conftest import eventually, unique
from tests.integration.helpers import credit

pytestmark = pytest.mark.integration


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_each_service_credential_does_only_what_its_service_needs(http) -> None:
    ledger = http("rewards_ledger")
    user = unique("scoped")
    await credit(ledger, user, 100)
    exchange = bearer(dev_service_token("exchange"))
    tasks = bearer(dev_service_token("task_progress"))
    notifier = bearer(dev_service_token("notifier"))

    def debit_body() -> dict[str, object]:
        return {"points": 10, "idempotency_key": uuid.uuid4().hex, "reason": "scoped"}

    # The exchange debits, refunds and reads accounts ...
    body = debit_body()
    spent = await ledger.post(f"/v1/accounts/{user}/debits", json=body, headers=exchange)
    assert spent.status_code == 201, spent.text
    key = body["idempotency_key"]
    refunded = await ledger.post(
        f"/v1/accounts/{user}/refunds", json={"debit_idempotency_key": key}, headers=exchange
    )
    assert refunded.status_code == 201 and refunded.json()["status"] != "voided", refunded.text
    assert (await ledger.get(f"/v1/accounts/{user}", headers=exchange)).json()["balance"] == 100
    # ... but cannot mint points, read finance's reports or another service's reports.
    minted = await ledger.post(
        f"/v1/accounts/{user}/credits",
        json={"points": 1000, "idempotency_key": uuid.uuid4().hex, "reason": "no"},
        headers=exchange,
    )
    assert minted.status_code == 403 and minted.json()["error"] == "forbidden"
    assert (await ledger.get("/v1/reports/liability", headers=exchange)).status_code == 403
    assert (await ledger.get("/v1/reports/holders", headers=exchange)).status_code == 403

    # task_progress checks assets and debits make-ups, nothing else.
    assert (await ledger.get("/v1/assets/points", headers=tasks)).status_code == 200
    assert (await ledger.get(f"/v1/accounts/{user}", headers=tasks)).status_code == 403
    assert (await ledger.get("/v1/assets", headers=tasks)).status_code == 403

    # The notifier reads its reports and cannot move points.
    assert (await ledger.get("/v1/reports/holders", headers=notifier)).status_code == 200
    moved = await ledger.post(f"/v1/accounts/{user}/debits", json=debit_body(), headers=notifier)
    assert moved.status_code == 403

    # Users and strangers get nothing of it; the balance is what the exchange left.
    mine = bearer(issue_user_token(DEV_JWT_SECRET, user))
    assert (
        await ledger.post(f"/v1/accounts/{user}/debits", json=debit_body(), headers=mine)
    ).status_code == 403
    stranger = await ledger.get("/v1/reports/holders", headers=bearer("not-a-credential"))
    assert stranger.status_code == 401
    assert (await ledger.get(f"/v1/accounts/{user}", headers=mine)).json()["balance"] == 100


async def test_insights_credential_reads_its_reference_data_and_nothing_else(http) -> None:
    ledger, tasks, exchange = http("rewards_ledger"), http("task_progress"), http("exchange")
    insights = bearer(dev_service_token("insights"))
    user = unique("insights-cred")
    now = datetime.now(UTC)
    window = {"from": now.isoformat(), "to": (now + timedelta(days=7)).isoformat()}

    # The three reads its reference copies make ...
    catalog = await exchange.get(
        "/v1/items", params={"include_unavailable": "true"}, headers=insights
    )
    assert catalog.status_code == 200, catalog.text
    rules = await tasks.get("/v1/tasks", params={"limit": 1}, headers=insights)
    assert rules.status_code == 200, rules.text
    expiring = await ledger.get("/v1/reports/expiring-lots", params=window, headers=insights)
    assert expiring.status_code == 200, expiring.text
    # ... the two reconciliations its business health reads ...
    for client in (ledger, exchange):
        reconciled = await client.get("/v1/reconciliation", headers=insights)
        assert reconciled.status_code == 200, reconciled.text

    # ... and no write, no other read: not the holders list the notifier reads, not an
    # account, not one rule (the console's tasks:read), not the exchange's redemptions.
    minted = await ledger.post(
        f"/v1/accounts/{user}/credits",
        json={"points": 1000, "idempotency_key": uuid.uuid4().hex, "reason": "no"},
        headers=insights,
    )
    assert minted.status_code == 403 and minted.json()["error"] == "forbidden"
    created = await tasks.post(
        "/v1/tasks", json={"name": "no", "action": "share", "reward_points": 5}, headers=insights
    )
    assert created.status_code == 403, created.text
    for client, path in (
        (ledger, "/v1/reports/holders"),
        (ledger, f"/v1/accounts/{user}"),
        (tasks, "/v1/tasks/00000000-0000-0000-0000-000000000000"),
        (exchange, "/v1/fulfilments"),
        (exchange, f"/v1/users/{user}/redemptions"),
    ):
        assert (await client.get(path, headers=insights)).status_code == 403, path

    # The running insights copies all three with it (a refused read would count as failed).
    async def copied() -> None:
        metrics = (await http("insights").get("/metrics")).text
        for data in ("catalog", "task_rules", "expiring_points"):
            line = f'jifen_insights_reference_syncs_total{{data="{data}",outcome="ok"}}'
            counts = [
                float(x.rsplit(" ", 1)[1]) for x in metrics.splitlines() if x.startswith(line)
            ]
            assert counts and counts[0] > 0, data

    await eventually(copied, timeout=90)


async def test_console_credential_makes_the_operator_calls_and_no_others(http) -> None:
    ledger, tasks, exchange = http("rewards_ledger"), http("task_progress"), http("exchange")
    engagement, insights, notifier = http("engagement"), http("insights"), http("notifier")
    console = bearer(dev_service_token("console"))
    user = unique("console-cred")

    # Operator writes the console makes: a rule created and changed, points given and taken.
    rule = await tasks.post(
        "/v1/tasks",
        json={"name": unique("console rule"), "action": "share", "reward_points": 5},
        headers=console,
    )
    assert rule.status_code == 201, rule.text
    task_id = rule.json()["id"]
    changed = await tasks.patch(f"/v1/tasks/{task_id}", json={"active": False}, headers=console)
    assert changed.status_code == 200 and changed.json()["active"] is False, changed.text

    def adjustment(points: int) -> dict[str, object]:
        return {"points": points, "idempotency_key": uuid.uuid4().hex, "reason": "console"}

    given = await ledger.post(f"/v1/accounts/{user}/credits", json=adjustment(50), headers=console)
    assert given.status_code == 201, given.text
    taken = await ledger.post(f"/v1/accounts/{user}/debits", json=adjustment(20), headers=console)
    assert taken.status_code == 201, taken.text
    # ... and the reads its pages show.
    for client, path in (
        (ledger, f"/v1/accounts/{user}/balances"),
        (ledger, f"/v1/accounts/{user}/entries"),
        (ledger, "/v1/reports/liability"),
        (tasks, f"/v1/tasks/{task_id}/versions"),
        (tasks, f"/v1/users/{user}/tasks"),
        (exchange, "/v1/fulfilments"),
        (exchange, f"/v1/users/{user}/redemptions"),
        (engagement, f"/v1/users/{user}/badges"),
        (notifier, "/v1/campaigns"),
        (insights, "/v1/kpis/summary"),
    ):
        answer = await client.get(path, headers=console)
        assert answer.status_code == 200, (path, answer.text)
    assert (await ledger.get(f"/v1/accounts/{user}", headers=console)).json()["balance"] == 30

    # What no console page does is refused: the notifier's reports, refunds and batch debits
    # (the exchange's), assets, the tier ladder, experiments, templates, retiring an item,
    # order refunds. (Valid bodies: a malformed one would be refused before the credential.)
    refused = [
        await ledger.get("/v1/reports/holders", headers=console),
        await ledger.get(
            "/v1/reports/expiring-lots",
            params={"from": "2026-01-01T00:00:00+00:00", "to": "2026-01-02T00:00:00+00:00"},
            headers=console,
        ),
        await ledger.post(
            f"/v1/accounts/{user}/refunds",
            json={"debit_idempotency_key": uuid.uuid4().hex},
            headers=console,
        ),
        await ledger.post(
            "/v1/debits/batch",
            json={"debits": [{**adjustment(1), "user_id": user}]},
            headers=console,
        ),
        await ledger.get("/v1/assets", headers=console),
        await engagement.put(
            "/v1/tiers", json=[{"code": "x", "name": "x", "min_growth": 0}], headers=console
        ),
        await insights.patch("/v1/experiments/nope", json={"status": "stopped"}, headers=console),
        await insights.get("/v1/experiments/nope", headers=console),
        await notifier.get("/v1/templates", headers=console),
        await exchange.delete(f"/v1/items/{uuid.uuid4()}", headers=console),
        await tasks.post("/v1/orders/nope/refunds", json={"refund_no": "r1"}, headers=console),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused), [
        (r.request.method, r.request.url.path, r.status_code) for r in refused
    ]
    assert (await ledger.get(f"/v1/accounts/{user}", headers=console)).json()["balance"] == 30
