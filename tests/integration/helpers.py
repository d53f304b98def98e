"""Small drivers for the running suite, used by several integration tests."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import ADMIN, INGEST, eventually


async def create_task(tasks: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": fields.pop("name", f"task for {fields['action']}"), **fields}
    response = await tasks.post("/v1/tasks", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


async def send(sensor: httpx.AsyncClient, events: list[dict[str, Any]]) -> dict[str, Any]:
    body = events[0] if len(events) == 1 else {"events": events}
    response = await sensor.post("/v1/events", json=body, headers=INGEST)
    assert response.status_code == 202, response.text
    return response.json()


async def balance(ledger: httpx.AsyncClient, user_id: str) -> int:
    response = await ledger.get(f"/v1/accounts/{user_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    return int(response.json()["balance"])


async def entries(ledger: httpx.AsyncClient, user_id: str) -> list[dict[str, Any]]:
    response = await ledger.get(
        f"/v1/accounts/{user_id}/entries", params={"limit": 500}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def wait_for_balance(
    ledger: httpx.AsyncClient, user_id: str, expected: int, timeout: float = 30
) -> None:
    async def check() -> None:
        assert await balance(ledger, user_id) == expected

    await eventually(check, timeout)


async def reconciliation(ledger: httpx.AsyncClient) -> dict[str, Any]:
    response = await ledger.get("/v1/reconciliation", headers=ADMIN)
    assert response.status_code == 200, response.text
    return dict(response.json())
