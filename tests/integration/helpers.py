"""Small drivers for the running suite, used by several integration tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from services.rewards_ledger import service as ledger_service
from shared.db import Database, create_engine, database_url
from tests.conftest import ADMIN, INGEST, eventually


@asynccontextmanager
async def open_database(
    server_url: str, name: str, *, pool_size: int = 4, max_overflow: int = 4
) -> AsyncIterator[Database]:
    """A connection pool on one database of the test server, disposed afterwards."""
    db = Database(
        create_engine(
            database_url(server_url, name), pool_size=pool_size, max_overflow=max_overflow
        )
    )
    try:
        yield db
    finally:
        await db.dispose()


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


async def credit(
    ledger: httpx.AsyncClient, user_id: str, points: int, **fields: Any
) -> dict[str, Any]:
    """Give a user points as an operations adjustment (a lot of its own)."""
    body = {"points": points, "idempotency_key": uuid.uuid4().hex, "reason": "test", **fields}
    response = await ledger.post(f"/v1/accounts/{user_id}/credits", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def create_item(exchange: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {
        "name": f"item {uuid.uuid4().hex[:6]}",
        "category": "test",
        "type": "virtual",
        "points_price": 10,
        "stock": 100,
        **fields,
    }
    response = await exchange.post("/v1/items", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def get_item(exchange: httpx.AsyncClient, item_id: str) -> dict[str, Any]:
    response = await exchange.get(f"/v1/items/{item_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def redeem(
    exchange: httpx.AsyncClient,
    user_id: str,
    item_id: str,
    key: str | None = None,
    quantity: int = 1,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> httpx.Response:
    body = {
        "user_id": user_id,
        "item_id": item_id,
        "quantity": quantity,
        "idempotency_key": key or uuid.uuid4().hex,
        **fields,
    }
    return await exchange.post("/v1/redemptions", json=body, headers=headers or ADMIN)


async def redemption(exchange: httpx.AsyncClient, redemption_id: str) -> dict[str, Any]:
    response = await exchange.get(f"/v1/redemptions/{redemption_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def settled(
    exchange: httpx.AsyncClient, redemption_id: str, timeout: float = 60
) -> dict[str, Any]:
    """Wait until a redemption is no longer pending or cancelling; returns it."""

    async def check() -> dict[str, Any]:
        found = await redemption(exchange, redemption_id)
        assert found["status"] not in ("pending", "cancelling"), found
        return found

    return await eventually(check, timeout, interval=0.3)


async def exchange_reconciliation(exchange: httpx.AsyncClient) -> dict[str, Any]:
    response = await exchange.get("/v1/reconciliation", headers=ADMIN)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def read_topic(
    bootstrap: str,
    topic: str,
    at_least: int,
    keep: Callable[[dict[str, Any]], bool] = lambda message: True,
    then_wait_ms: int = 0,
) -> list[dict[str, Any]]:
    """Read `topic` from the beginning until `at_least` kept messages arrived (30 s at most);
    `then_wait_ms` reads on a little longer, so that a test can see anything extra."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[dict[str, Any]] = []

    async def take(timeout_ms: int) -> None:
        for records in (await consumer.getmany(timeout_ms=timeout_ms)).values():
            found.extend(m for m in (json.loads(r.value) for r in records) if keep(m))

    try:

        async def enough() -> None:
            await take(300)
            assert len(found) >= at_least, found

        await eventually(enough, 30)
        if then_wait_ms:
            await take(then_wait_ms)
    finally:
        await consumer.stop()
    return found


async def reconciled(ledger_db: Database) -> None:
    """The ledger's reconciliation, run on a ledger database directly, finds nothing wrong."""
    async with ledger_db.transaction() as session:
        report = await ledger_service.reconcile(session)
    assert report["ok"], report["violations"]
