"""Notifier benchmarks, called from `python -m bench` (bench/__main__.py wires them in).

- `expiry_scan`: `lots` active lots (BENCH_NOTIFIER_LOTS, default 1,000,000) written into the
  ledger's database with set-based SQL, five per user, expiring at local noon over eight
  days; then one run of the points-expiring trigger for the day before them, through the
  API. It pages through the ledger's expiring-lots report, works out every user's reminder
  and queues it (due the next morning, so nothing is sent during the measurement). Reports
  lots per second and the ledger's and notifier's CPU.
- `fan_out`: `users` (BENCH_NOTIFIER_USERS, default 20,000) with a device each (half APNs
  over HTTP/2 + TLS, half FCM), 10% opted out of marketing and 5% who already had today's
  marketing message; one marketing campaign to all of them, timed from the POST until every
  notification is final, sent to the fake providers of tests/push_fakes.py in this process.
  Checks that exactly the opted-out and capped users were suppressed and that every sent
  message reached a provider once; reports notifications per second and the notifier's CPU
  per notification.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import text

from bench.engagement import process_cpu_seconds
from services.devstack import Stack
from shared.db import create_engine, database_url
from shared.settings import DEV_ADMIN_TOKEN
from tests.push_fakes import PushFakes

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
TZ = "Asia/Shanghai"


def _cpu(stack: Stack, *names: str) -> dict[str, float]:
    return {n: process_cpu_seconds(stack.processes[n].pid) for n in names}


async def expiry_scan(stack: Stack, server_url: str, lots: int) -> dict[str, Any]:
    zone = ZoneInfo(TZ)
    day = datetime.now(zone).date() + timedelta(days=60)  # clear of every other lot
    first = datetime(day.year, day.month, day.day, 12, tzinfo=zone) + timedelta(days=1)
    users = max(1, lots // 5)
    engine = create_engine(database_url(server_url, "jifen_rewards_ledger"), pool_size=1)
    started = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO accounts (user_id, asset, balance) "
                "SELECT 'bx_' || lpad(g::text, 8, '0'), 'points', 500 "
                "FROM generate_series(1, :users) g ON CONFLICT DO NOTHING"
            ),
            {"users": users},
        )
        await conn.execute(
            text(
                "INSERT INTO lots (id, user_id, asset, origin, origin_ref, points, remaining, "
                "expires_at, status) "
                "SELECT md5('bench-lot' || g)::uuid::text, "
                "'bx_' || lpad((1 + g % :users)::text, 8, '0'), 'points', 'adjustment', "
                "'bench', 100, 100, CAST(:first AS timestamptz) + ((g / :users) % 8) * interval '1 day', "
                "'active' "
                "FROM generate_series(0, :lots - 1) g ON CONFLICT DO NOTHING"
            ),
            {"users": users, "lots": lots, "first": first},
        )
    async with engine.connect() as conn:
        await conn.execute(text("COMMIT"))
        await conn.execute(text("ANALYZE lots"))
    await engine.dispose()
    build_s = time.perf_counter() - started

    before = _cpu(stack, "rewards_ledger", "notifier")
    async with httpx.AsyncClient(base_url=stack.url("notifier"), timeout=600) as client:
        t0 = time.perf_counter()
        response = await client.post(
            "/v1/triggers/points_expiring/runs",
            json={"day": day.isoformat(), "timezone": TZ, "immediate": False},
            headers=ADMIN,
        )
        elapsed = time.perf_counter() - t0
    response.raise_for_status()
    after = _cpu(stack, "rewards_ledger", "notifier")
    queued = sum(int(r["queued"]) for r in response.json()["items"])
    return {
        "lots": lots,
        "users": users,
        "build_s": build_s,
        "seconds": elapsed,
        "lots_per_s": lots / elapsed,
        "reminders": queued,
        "cpu_s": {n: after[n] - before[n] for n in after},
    }


async def fan_out(stack: Stack, server_url: str, fakes: PushFakes, users: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    ids = [f"bf_{run}_{i:06d}" for i in range(users)]
    opted_out = {u for i, u in enumerate(ids) if i % 10 == 0}
    capped = {u for i, u in enumerate(ids) if i % 20 == 5}
    today = datetime.now(ZoneInfo(TZ)).date()
    engine = create_engine(database_url(server_url, "jifen_notifier"), pool_size=1)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO devices (token, user_id, platform) "
                "SELECT 'tok' || md5(u), u, CASE WHEN n % 2 = 0 THEN 'ios' ELSE 'android' END "
                "FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS t(u, n)"
            ),
            {"ids": ids},
        )
        await conn.execute(
            text(
                "INSERT INTO preferences (user_id, marketing, quiet_enabled) "
                "SELECT u, NOT (u = ANY(CAST(:out AS text[]))), false "
                "FROM unnest(CAST(:ids AS text[])) AS t(u)"
            ),
            {"ids": ids, "out": sorted(opted_out)},
        )
        await conn.execute(
            text(
                "INSERT INTO daily_counts (user_id, day, capped, marketing) "
                "SELECT u, :day, 1, 1 FROM unnest(CAST(:ids AS text[])) AS t(u)"
            ),
            {"ids": sorted(capped), "day": today},
        )
    seen = fakes.deliveries()
    apns_before, fcm_before = len(seen["apns"]), len(seen["fcm"])
    before = _cpu(stack, "notifier")
    async with httpx.AsyncClient(base_url=stack.url("notifier"), timeout=120) as client:
        t0 = time.perf_counter()
        created = await client.post(
            "/v1/campaigns",
            json={
                "idempotency_key": f"bench-{run}",
                "name": "bench fan-out",
                "audience": {"user_ids": ids},
                "category": "marketing",
                "title": "双十二积分狂欢",
                "body": "积分商城新品上架, 快来兑换",
            },
            headers=ADMIN,
        )
        created.raise_for_status()
        campaign_id = created.json()["id"]
        counts: dict[str, int] = {}
        while time.perf_counter() - t0 < 600:
            got = (await client.get(f"/v1/campaigns/{campaign_id}", headers=ADMIN)).json()
            counts = got["counts"]
            final = counts.get("sent", 0) + counts.get("suppressed", 0) + counts.get("failed", 0)
            if got["status"] == "done" and final == users:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
    after = _cpu(stack, "notifier")
    await engine.dispose()
    seen = fakes.deliveries()
    delivered = (len(seen["apns"]) - apns_before) + (len(seen["fcm"]) - fcm_before)
    expected_suppressed = len(opted_out | capped)
    cpu = after["notifier"] - before["notifier"]
    return {
        "users": users,
        "seconds": elapsed,
        "per_s": users / elapsed,
        "counts": counts,
        "delivered": delivered,
        "suppressed_as_expected": counts.get("suppressed", 0) == expected_suppressed,
        "delivered_once_each": delivered == counts.get("sent", 0),
        "cpu_s": cpu,
        "cpu_ms_per_notification": cpu * 1000 / users,
    }


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    if (scan := results.get("notifier_expiry_scan")) is not None:
        out.append(
            (
                f"notifier: expiry scan of {scan['lots']:,} lots",
                f"{scan['seconds']:.1f} s",
                f"{scan['lots_per_s']:,.0f} lots/s, {scan['reminders']:,} reminders queued for "
                f"{scan['users']:,} users; CPU ledger {scan['cpu_s']['rewards_ledger']:.1f} s, "
                f"notifier {scan['cpu_s']['notifier']:.1f} s",
            )
        )
    for key in ("notifier_fan_out", "notifier_fan_out_2"):
        if (fan := results.get(key)) is None:
            continue
        ok = fan["suppressed_as_expected"] and fan["delivered_once_each"]
        replicas = fan.get("replicas", 1)
        out.append(
            (
                f"notifier: campaign fan-out to {fan['users']:,}, {replicas} replica(s)",
                f"{fan['per_s']:,.0f}/s",
                f"{fan['counts']}; {fan['delivered']:,} delivered; caps and opt-outs "
                f"{'honoured' if ok else 'NOT honoured'}; "
                f"{fan['cpu_ms_per_notification']:.2f} ms CPU per notification in the "
                "first notifier process",
            )
        )
    return out


async def measure(stack: Stack, server_url: str, fakes: PushFakes) -> dict[str, Any]:
    lots = int(os.environ.get("BENCH_NOTIFIER_LOTS", 1_000_000))
    users = int(os.environ.get("BENCH_NOTIFIER_USERS", 20_000))
    results = {"notifier_fan_out": await fan_out(stack, server_url, fakes, users)}
    # The dispatcher scales out: a worker replica claims its own batches (SKIP LOCKED).
    replica = stack.start_service("notifier", replica=1, role="worker")
    try:
        stack.wait_ready(120, (replica,))
        scaled = await fan_out(stack, server_url, fakes, users)
    finally:
        stack.stop_service(replica)
    results["notifier_fan_out_2"] = {**scaled, "replicas": 2}
    results["notifier_expiry_scan"] = await expiry_scan(stack, server_url, lots)
    return results


def main() -> None:
    """`python -m bench.notifier`: these benchmarks alone, on a fresh embedded stack."""
    import tempfile
    from pathlib import Path

    from services.devstack import EmbeddedBroker, free_port, start_embedded_postgres
    from services.devstack import stop_embedded_postgres as stop_postgres

    scratch = Path(tempfile.mkdtemp(prefix="jifen-bench-notifier-"))
    database = os.environ.get("JIFEN_DATABASE_URL") or start_embedded_postgres(scratch / "pg")
    broker = EmbeddedBroker(port=free_port())
    fakes = PushFakes(scratch / "push").start()
    stack = Stack(
        database_url=database,
        kafka_bootstrap=broker.start(log_path=scratch / "broker.log"),
        base_port=int(os.environ.get("BENCH_BASE_PORT", 18200)),
        env={"JIFEN_LOG_LEVEL": "WARNING", "JIFEN_SEED_DEMO": "false", **fakes.env()},
        log_dir=scratch / "logs",
    )
    try:
        stack.start(timeout=180)
        results = asyncio.run(measure(stack, database, fakes))
    finally:
        stack.stop()
        broker.stop()
        fakes.stop()
        stop_postgres()
    width = max(len(r[0]) for r in rows(results))
    for what, headline, detail in rows(results):
        print(f"{what:<{width}}  {headline:>18}  {detail}")
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
