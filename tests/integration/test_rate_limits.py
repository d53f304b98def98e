"""Rate limits on a replica started with small ones (the suite's own run with the defaults):
an ingest key, a user and an anonymous IP each get 429 with Retry-After past their limit,
counted in metrics; the admin token and service credentials are never limited; one user's
flood leaves another user untouched."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from shared.auth import issue_user_token
from shared.settings import DEV_INGEST_KEY, DEV_JWT_SECRET, dev_service_token
from tests.conftest import ADMIN, envelope, unique

pytestmark = pytest.mark.integration

SMALL = {
    "JIFEN_RATE_LIMIT_KEY_PER_S": "1",
    "JIFEN_RATE_LIMIT_KEY_BURST": "5",
    "JIFEN_RATE_LIMIT_USER_PER_S": "1",
    "JIFEN_RATE_LIMIT_USER_BURST": "5",
    "JIFEN_RATE_LIMIT_IP_PER_S": "1",
    "JIFEN_RATE_LIMIT_IP_BURST": "5",
}


@pytest.fixture
def limited(stack):
    """An extra exchange and behavior_sensor replica each, with the small limits."""
    names = [
        stack.start_service(service, replica=1, role="api", extra_env=SMALL)
        for service in ("exchange", "behavior_sensor")
    ]
    try:
        stack.wait_ready(120, tuple(names))
        yield {name.partition("#")[0]: stack.url(name) for name in names}
    finally:
        for name in names:
            stack.stop_service(name)


async def burst(client: httpx.AsyncClient, n: int, *args, **kwargs) -> list[httpx.Response]:
    return [await client.request(*args, **kwargs) for _ in range(n)]


async def test_each_caller_is_limited_on_its_own(limited) -> None:
    async with httpx.AsyncClient(base_url=limited["exchange"], timeout=30) as exchange:
        ann = {"Authorization": f"Bearer {issue_user_token(DEV_JWT_SECRET, unique('ann'))}"}
        bob = {"Authorization": f"Bearer {issue_user_token(DEV_JWT_SECRET, unique('bob'))}"}
        flood = await burst(exchange, 8, "GET", "/v1/items", headers=ann)
        statuses = [r.status_code for r in flood]
        assert statuses[:5] == [200] * 5 and set(statuses[5:]) == {429}, statuses
        refused = flood[-1]
        assert refused.json()["error"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        # Ann's flood costs Bob nothing, nor the operations or the services' own calls.
        assert (await exchange.get("/v1/items", headers=bob)).status_code == 200
        for headers in (ADMIN, {"Authorization": f"Bearer {dev_service_token('exchange')}"}):
            assert {
                r.status_code
                for r in await burst(exchange, 12, "GET", "/v1/items", headers=headers)
            } == {200}
        # Anonymous callers share their IP's bucket.
        anonymous = [r.status_code for r in await burst(exchange, 8, "GET", "/v1/items")]
        assert 429 in anonymous and anonymous[0] == 200
        # A second later Ann has a token again; health and metrics are never limited.
        await asyncio.sleep(1.1)
        assert (await exchange.get("/v1/items", headers=ann)).status_code == 200
        for _ in range(10):
            assert (await exchange.get("/health/live")).status_code == 200
        metrics = (await exchange.get("/metrics")).text
        assert 'jifen_rate_limited_total{kind="user",service="exchange"}' in metrics
        assert 'jifen_rate_limited_total{kind="ip",service="exchange"}' in metrics

    async with httpx.AsyncClient(base_url=limited["behavior_sensor"], timeout=30) as sensor:
        user = unique("limited")
        sent = [
            await sensor.post(
                "/v1/events",
                json=envelope(user, "rate_test", "2026-11-30T12:00:00+08:00"),
                headers={"X-Api-Key": DEV_INGEST_KEY},
            )
            for _ in range(8)
        ]
        assert [r.status_code for r in sent].count(202) == 5
        assert sent[-1].status_code == 429 and "Retry-After" in sent[-1].headers
