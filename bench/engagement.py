"""Engagement benchmarks, called from `python -m bench` (bench/__main__.py wires them in).

- `update_lag`: ledger.events credits produced at a fixed rate (as the ledger publishes them),
  each to a user of its own, and the time until that user's score is in the leaderboard
  index (read straight from the Redis-protocol server, so the reader's HTTP costs nothing
  here). What it measures: consume, apply in PostgreSQL, commit, write the index.
- `rank_reads`: a board with `users` ranked users (scores written into PostgreSQL with one
  set-based statement, the index rebuilt from them through the API, which is timed too),
  then rank lookups and top-100 pages at the HTTP edge with `concurrency` callers.

Both report the engagement process's CPU over the measured phase. Each returns a dict;
`rows(results)` turns `{"engagement_update_lag": ..., "engagement_rank_reads": ...}` into
table rows shaped like bench/__main__.py's `table()` rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from services.devstack import Stack
from shared.db import create_engine, database_url
from shared.settings import DEV_ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
SERVICE = "engagement"


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": _percentile(values, 50) * 1000,
        "p99_ms": _percentile(values, 99) * 1000,
        "max_ms": max(values) * 1000 if values else float("nan"),
    }


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by one process over a phase, as seconds and as a share of one core."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu = process_cpu_seconds(pid)
        self.wall = time.monotonic()

    def read(self) -> dict[str, float]:
        cpu = process_cpu_seconds(self.pid) - self.cpu
        wall = time.monotonic() - self.wall
        return {"cpu_s": cpu, "wall_s": wall, "cpu_percent_of_core": 100 * cpu / max(wall, 1e-9)}


async def _create_board(stack: Stack, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(headers=ADMIN, timeout=30) as client:
        r = await client.post(f"{stack.url(SERVICE)}/v1/leaderboards", json=body)
        r.raise_for_status()


def _credit(user: str, points: int, entry_id: int) -> bytes:
    return json.dumps(
        {
            "type": "credited",
            "entry_id": entry_id,
            "user_id": user,
            "asset": "points",
            "points": points,
            "balance_after": points,
            "idempotency_key": f"bench-lag-{entry_id}",
            "occurred_at": datetime.now(UTC).isoformat(),
        }
    ).encode()


async def update_lag(stack: Stack, rate: int = 1000, seconds: float = 10) -> dict[str, Any]:
    """p50/p99 from a ledger credit's publish to its user's score in the index, at `rate`/s."""
    code = f"bench-lag-{uuid.uuid4().hex[:8]}"
    await _create_board(
        stack, {"code": code, "name": "bench lag", "metric": "points_earned", "window": "day"}
    )
    period = datetime.now(UTC).astimezone(_tz()).strftime("%Y-%m-%d")
    key = f"jifen:lb:{code}:{period}"
    total = int(rate * seconds)
    base = random.randrange(10**13, 10**14)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    index = aioredis.Redis.from_url(stack.redis_url, decode_responses=True)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=2)
    await producer.start()
    meter = CpuMeter(stack.processes[SERVICE].pid)
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set() or len(seen) < len(sent):
            waiting = [u for u in sent if u not in seen]
            if waiting:
                async with index.pipeline(transaction=False) as pipe:
                    for user in waiting:
                        pipe.zscore(key, user)
                    found = await pipe.execute()
                now = time.monotonic()
                for user, score in zip(waiting, found, strict=True):
                    if score is not None:
                        seen[user] = now
            if done.is_set() and time.monotonic() - last_send > 60:
                return  # whatever never showed up counts as lost
            await asyncio.sleep(0.005)

    last_send = time.monotonic()
    watcher = asyncio.create_task(watch())
    try:
        start = time.monotonic()
        tick = 0.01
        per_tick = max(1, int(rate * tick))
        i = 0
        while i < total:
            target = start + (i / rate)
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            futures = []
            for _ in range(min(per_tick, total - i)):
                user = f"bench_lag_{code}_{i}"
                futures.append(
                    await producer.send(
                        "ledger.events", _credit(user, 1 + i % 97, base + i), key=user.encode()
                    )
                )
                sent[user] = time.monotonic()
                i += 1
            await asyncio.gather(*futures)
            last_send = time.monotonic()
        elapsed = time.monotonic() - start
        done.set()
        await asyncio.wait_for(watcher, timeout=120)
    finally:
        done.set()
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher
        await producer.stop()
        await index.aclose()
    lags = [seen[u] - sent[u] for u in seen]
    return {
        "rate": rate,
        "events": total,
        "achieved_rate": total / max(elapsed, 1e-9),
        "visible": len(seen),
        **_ms(lags),
        "cpu": meter.read(),
    }


def _tz() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(os.environ.get("JIFEN_BUSINESS_TIMEZONE", "Asia/Shanghai"))


async def _load_scores(server_url: str, code: str, users: int) -> float:
    """`users` scores of an all_time board written straight into engagement's database."""
    engine = create_engine(database_url(server_url, "jifen_engagement"), pool_size=1)
    started = time.monotonic()
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO board_periods (board_code, period_key, status) "
                    "VALUES (:b, 'all', 'open') ON CONFLICT DO NOTHING"
                ),
                {"b": code},
            )
            await conn.execute(
                text(
                    "INSERT INTO board_scores (board_code, period_key, user_id, score, reached_at) "
                    "SELECT :b, 'all', 'bench_rank_' || g, (hashtext(g::text) & 1048575) + 1, now() "
                    "FROM generate_series(1, :n) AS g"
                ),
                {"b": code, "n": users},
            )
    finally:
        await engine.dispose()
    return time.monotonic() - started


async def _drop_board(server_url: str, stack: Stack, code: str) -> None:
    engine = create_engine(database_url(server_url, "jifen_engagement"), pool_size=1)
    try:
        async with engine.begin() as conn:
            for table in ("board_scores", "board_periods", "boards"):
                column = "code" if table == "boards" else "board_code"
                await conn.execute(text(f"DELETE FROM {table} WHERE {column} = :b"), {"b": code})
    finally:
        await engine.dispose()
    index = aioredis.Redis.from_url(stack.redis_url)
    try:
        await index.delete(f"jifen:lb:{code}:all", f"jifen:lb:{code}:all:built")
    finally:
        await index.aclose()


async def rank_reads(
    stack: Stack,
    server_url: str,
    users: int = 1_000_000,
    requests: int = 5000,
    concurrency: int = 2,
    keep: bool = False,
) -> dict[str, Any]:
    """Rank lookups and top-100 pages at the HTTP edge on a board of `users` ranked users."""
    code = f"bench-rank-{uuid.uuid4().hex[:8]}"
    await _create_board(
        stack,
        {
            "code": code,
            "name": "bench ranks",
            "metric": "action_count",
            "action": "bench_never_sent",
            "window": "all_time",
        },
    )
    load_s = await _load_scores(server_url, code, users)
    base = stack.url(SERVICE)
    async with httpx.AsyncClient(headers=ADMIN, timeout=900) as client:
        started = time.monotonic()
        r = await client.post(f"{base}/v1/leaderboards/{code}/rebuild")
        r.raise_for_status()
        rebuild_s = time.monotonic() - started
        members = int(r.json()["members"])
    rng = random.Random(11)
    results: dict[str, Any] = {
        "users": users,
        "members": members,
        "load_s": load_s,
        "rebuild_s": rebuild_s,
        "concurrency": concurrency,
    }
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60), connector=aiohttp.TCPConnector(limit=0)
    ) as session:
        for name, path in (
            (
                "user_rank",
                lambda: f"/v1/leaderboards/{code}/users/bench_rank_{rng.randint(1, users)}",
            ),
            ("top_100", lambda: f"/v1/leaderboards/{code}/top?limit=100"),
        ):
            latencies: list[float] = []
            failures = 0
            queue = [path() for _ in range(requests)]

            async def caller(queue: list[str] = queue, latencies: list[float] = latencies) -> int:
                failed = 0
                while queue:
                    url = base + queue.pop()
                    t0 = time.perf_counter()
                    async with session.get(url) as response:
                        await response.read()
                        if response.status != 200:
                            failed += 1
                    latencies.append(time.perf_counter() - t0)
                return failed

            for _ in range(min(200, requests)):  # warm up connections and caches
                async with session.get(base + path()) as response:
                    await response.read()
            meter = CpuMeter(stack.processes[SERVICE].pid)
            t0 = time.monotonic()
            failures = sum(await asyncio.gather(*(caller() for _ in range(concurrency))))
            wall = time.monotonic() - t0
            results[name] = {
                "requests": requests,
                "failures": failures,
                "per_s": requests / max(wall, 1e-9),
                **_ms(latencies),
                "cpu": meter.read(),
            }
    if not keep:
        await _drop_board(server_url, stack, code)
    return results


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Table rows (what, headline, detail) for bench/__main__.py's table()."""
    out: list[tuple[str, str, str]] = []
    if (lag := results.get("engagement_update_lag")) is not None:
        out.append(
            (
                f"engagement: credit -> rank visible at {lag['rate']:,}/s",
                f"p99 {lag['p99_ms']:,.0f} ms",
                f"p50 {lag['p50_ms']:,.0f} ms, max {lag['max_ms']:,.0f} ms; "
                f"{lag['visible']:,}/{lag['events']:,} visible at {lag['achieved_rate']:,.0f}/s",
            )
        )
        out.append(
            (
                "engagement: CPU while updating",
                f"{lag['cpu']['cpu_percent_of_core']:.0f}% of a core",
                f"{1000 * lag['cpu']['cpu_s'] / max(lag['events'], 1):.2f} ms per event",
            )
        )
    if (reads := results.get("engagement_rank_reads")) is not None:
        out.append(
            (
                f"engagement: index rebuild, {reads['members']:,} users",
                f"{reads['rebuild_s']:,.1f} s",
                f"scores loaded into PostgreSQL in {reads['load_s']:,.1f} s",
            )
        )
        for name, label in (("user_rank", "rank lookup"), ("top_100", "top 100")):
            r = reads[name]
            out.append(
                (
                    f"engagement: {label}, {reads['users']:,} ranked (HTTP)",
                    f"p99 {r['p99_ms']:,.1f} ms",
                    f"p50 {r['p50_ms']:,.1f} ms; {r['per_s']:,.0f}/s with {reads['concurrency']} "
                    f"callers; CPU {r['cpu']['cpu_percent_of_core']:.0f}% of a core; "
                    f"{r['failures']} failed",
                )
            )
    return out


async def measure(stack: Stack, server_url: str) -> dict[str, Any]:
    """Both benchmarks with the sizes from the environment (BENCH_ENGAGEMENT_*)."""
    rate = int(os.environ.get("BENCH_ENGAGEMENT_RATE", 1000))
    secs = float(os.environ.get("BENCH_ENGAGEMENT_SECONDS", 10))
    users = int(os.environ.get("BENCH_ENGAGEMENT_USERS", 1_000_000))
    concurrency = int(os.environ.get("BENCH_ENGAGEMENT_CONCURRENCY", 2))
    return {
        "engagement_update_lag": await update_lag(stack, rate, secs),
        "engagement_rank_reads": await rank_reads(
            stack, server_url, users, concurrency=concurrency
        ),
    }


def main() -> None:
    """`python -m bench.engagement`: these benchmarks alone, on a fresh embedded stack."""
    import tempfile

    from services.devstack import EmbeddedBroker, free_port, start_embedded_postgres
    from services.devstack import stop_embedded_postgres as stop_postgres

    scratch = Path(tempfile.mkdtemp(prefix="jifen-bench-engagement-"))
    database = os.environ.get("JIFEN_DATABASE_URL") or start_embedded_postgres(scratch / "pg")
    broker = EmbeddedBroker(port=free_port())
    stack = Stack(
        database_url=database,
        kafka_bootstrap=broker.start(log_path=scratch / "broker.log"),
        base_port=int(os.environ.get("BENCH_BASE_PORT", 18100)),
        env={"JIFEN_LOG_LEVEL": "WARNING", "JIFEN_SEED_DEMO": "false"},
        log_dir=scratch / "logs",
    )
    try:
        stack.start(timeout=180)
        results = asyncio.run(measure(stack, database))
    finally:
        stack.stop()
        broker.stop()
        stop_postgres()
    width = max(len(r[0]) for r in rows(results))
    for what, headline, detail in rows(results):
        print(f"{what:<{width}}  {headline:>18}  {detail}")
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
