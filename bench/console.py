"""The operations console's pages under the bench's data, called from `python -m bench`
(BENCH_ONLY=console runs this section alone).

Loads what makes each page heavy, through the services' own APIs: BENCH_CONSOLE_RULES rules,
BENCH_CONSOLE_ITEMS catalog items, a user with BENCH_CONSOLE_ENTRIES ledger entries and
redemptions, BENCH_CONSOLE_PARCELS physical redemptions waiting to ship, a few hundred
behaviors diverted by the anti-farming limit, leaderboards; and BENCH_CONSOLE_AUDIT rows in
the console's audit log (inserted set-based into the console's own database). Then an
operator signs in and each page is fetched BENCH_CONSOLE_ROUNDS times, one after another; the
figure is the page's server time as the console reports it (Server-Timing), target < 200 ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text

from bench.engagement import process_cpu_seconds
from console.settings import DEV_CONSOLE_PASSWORD
from services.devstack import Stack
from shared.db import create_engine, database_url
from shared.settings import DEV_ADMIN_TOKEN, DEV_INGEST_KEY

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
FARM_ACTION = "bench_farm"  # limited by bench/__main__.py's stack settings
FARM_LIMIT = 10
TARGET_MS = 200
USER = "bench-console-user"


def _env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


async def _post_all(
    client: httpx.AsyncClient, posts: list[tuple[str, dict[str, Any]]], width: int = 16
) -> None:
    """POST each (url, body), `width` at a time; any refusal stops the bench."""
    gate = asyncio.Semaphore(width)

    async def one(url: str, body: dict[str, Any]) -> None:
        async with gate:
            response = await client.post(url, json=body)
            if response.status_code >= 400:
                raise RuntimeError(f"{url}: {response.status_code} {response.text}")

    await asyncio.gather(*(one(url, body) for url, body in posts))


async def load(stack: Stack, server_url: str) -> dict[str, Any]:
    """Everything the pages will show; returns ids the page list needs."""
    rules, items = _env("BENCH_CONSOLE_RULES", 100), _env("BENCH_CONSOLE_ITEMS", 200)
    entries, parcels = _env("BENCH_CONSOLE_ENTRIES", 1000), _env("BENCH_CONSOLE_PARCELS", 200)
    audit_rows = _env("BENCH_CONSOLE_AUDIT", 50_000)
    url = stack.url
    async with httpx.AsyncClient(headers=ADMIN, timeout=60) as c:
        await _post_all(
            c,
            [
                (
                    f"{url('task_progress')}/v1/tasks",
                    {
                        "name": f"console bench rule {i}",
                        "action": f"bench_console_{i % 7}",
                        "reward_points": 1 + i % 5,
                    },
                )
                for i in range(rules)
            ],
        )
        first_rule = (await c.get(f"{url('task_progress')}/v1/tasks", params={"limit": 1})).json()[
            "items"
        ][0]["id"]
        await _post_all(
            c,
            [
                (
                    f"{url('exchange')}/v1/items",
                    {
                        "name": f"bench item {i}",
                        "category": "bench",
                        "type": "virtual",
                        "points_price": 10 + i,
                        "stock": 1000,
                    },
                )
                for i in range(items)
            ],
        )
        parcel = (
            await c.post(
                f"{url('exchange')}/v1/items",
                json={
                    "name": "bench parcel",
                    "category": "bench",
                    "type": "physical",
                    "points_price": 5,
                    "stock": parcels + 10,
                },
            )
        ).json()
        # one user with a long history and some parcels of their own
        await _post_all(
            c,
            [
                (
                    f"{url('rewards_ledger')}/v1/accounts/{USER}/credits",
                    {
                        "points": 10,
                        "idempotency_key": f"bench-console-{i}",
                        "reason": f"bench credit {i}",
                    },
                )
                for i in range(entries)
            ],
        )
        shippers = [f"bench-parcel-{i}" for i in range(parcels)]
        await _post_all(
            c,
            [
                (
                    f"{url('rewards_ledger')}/v1/accounts/{u}/credits",
                    {"points": 10, "idempotency_key": f"bench-parcel-{u}", "reason": "bench"},
                )
                for u in shippers
            ],
        )
        await _post_all(
            c,
            [
                (
                    f"{url('exchange')}/v1/redemptions",
                    {
                        "user_id": u,
                        "item_id": parcel["id"],
                        "idempotency_key": u,
                        "shipping_address": "1 Bench Road",
                    },
                )
                for u in [*shippers, USER]
            ],
        )
        # behaviors over the anti-farming limit: all but FARM_LIMIT per window are diverted
        start = datetime.now(UTC).replace(minute=0, second=1, microsecond=0)
        events = [
            {
                "event_id": uuid.uuid4().hex,
                "source": "bench",
                "user_id": f"bench-farmer-{i % 5}",
                "action": FARM_ACTION,
                "occurred_at": start.isoformat(),
                "attributes": {},
            }
            for i in range(300)
        ]
        response = await c.post(
            f"{url('behavior_sensor')}/v1/events",
            json={"events": events},
            headers={"X-Api-Key": DEV_INGEST_KEY},
        )
        response.raise_for_status()
        for code, window in (
            ("bench_day", "day"),
            ("bench_week", "week"),
            ("bench_all", "all_time"),
        ):
            await c.post(
                f"{url('engagement')}/v1/leaderboards",
                json={
                    "code": code,
                    "name": f"bench {window}",
                    "metric": "points_earned",
                    "window": window,
                },
            )
    await _audit_rows(server_url, audit_rows)
    return {"rule": first_rule}


async def _audit_rows(server_url: str, rows: int) -> None:
    engine = create_engine(database_url(server_url, "jifen_console"), pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO audit_log (operator, role, action, target, status, outcome, request, before, after) "
                    "SELECT 'bench', 'operator', 'points.credit', 'user:bench-' || (g % 5000), 201, 'done', "
                    "CAST(:request AS jsonb), CAST(:before AS jsonb), CAST(:after AS jsonb) "
                    "FROM generate_series(1, :rows) AS g"
                ),
                {
                    "rows": rows,
                    "request": json.dumps({"points": 10, "reason": "bench"}),
                    "before": json.dumps({"balance": 0}),
                    "after": json.dumps({"balance_after": 10}),
                },
            )
    finally:
        await engine.dispose()


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def pages(stack: Stack, ids: dict[str, Any], rounds: int) -> dict[str, dict[str, float]]:
    base = stack.url("console")
    paths = {
        "dashboard": "/dashboard",
        "dashboard status panel": "/dashboard/status",
        "rules": "/rules",
        "rule detail": f"/rules/{ids['rule']}",
        "catalog": "/catalog",
        "user": f"/users/{USER}",
        "fulfilment": "/fulfilment",
        "anti-farming": "/antifarming",
        "engagement": "/engagement",
        "growth": "/growth",
        "audit log": "/audit",
    }
    out: dict[str, dict[str, float]] = {}
    pid = stack.processes["console"].pid
    async with httpx.AsyncClient(base_url=base, headers={"Origin": base}, timeout=60) as client:
        signed = await client.post("/", data={"name": "operator", "password": DEV_CONSOLE_PASSWORD})
        if signed.status_code != 303:
            raise RuntimeError(f"cannot sign in to the console: {signed.status_code}")
        for name, path in paths.items():
            times = []
            for round_no in range(rounds + 2):  # two warm-up fetches
                if round_no == 2:
                    cpu_before = process_cpu_seconds(pid)
                response = await client.get(path)
                if response.status_code != 200:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
                found = re.search(r"app;dur=([0-9.]+)", response.headers.get("server-timing", ""))
                times.append(float(found.group(1)) if found else float("nan"))
            measured = times[2:]
            out[name] = {
                "console_cpu_ms": 1000 * (process_cpu_seconds(pid) - cpu_before) / rounds,
                "p50_ms": _percentile(measured, 50),
                "p95_ms": _percentile(measured, 95),
                "max_ms": max(measured),
                "bytes": len(response.content),
            }
    return out


async def measure(stack: Stack, server_url: str) -> dict[str, Any]:
    ids = await load(stack, server_url)
    await asyncio.sleep(2)  # the diverted behaviors processed, the status panel read once
    return {"console_pages": await pages(stack, ids, _env("BENCH_CONSOLE_ROUNDS", 20))}


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Table rows (what, headline, detail) for bench/__main__.py's table()."""
    out: list[tuple[str, str, str]] = []
    for name, page in (results.get("console_pages") or {}).items():
        verdict = "ok" if page["max_ms"] < TARGET_MS else f"OVER {TARGET_MS} ms"
        out.append(
            (
                f"console page: {name}",
                f"p50 {page['p50_ms']:,.0f} ms",
                f"p95 {page['p95_ms']:,.0f} ms, max {page['max_ms']:,.0f} ms ({verdict}); "
                f"console CPU {page['console_cpu_ms']:,.1f} ms; {page['bytes'] / 1024:,.0f} KiB",
            )
        )
    return out
