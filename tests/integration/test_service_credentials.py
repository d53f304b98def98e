"""Services call the ledger with their own scoped credentials, not the admin token: each
is accepted for exactly the calls that service makes (issue 25)."""

from __future__ import annotations

import uuid

import pytest

from shared.auth import issue_user_token
from shared.settings import DEV_JWT_SECRET, dev_service_token
from tests.conftest import unique
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
