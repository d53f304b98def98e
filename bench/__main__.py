"""`make bench`: measure the suite on this machine and print one table (saved as JSON too).

Starts embedded PostgreSQL and the broker in a scratch folder (or uses JIFEN_DATABASE_URL /
JIFEN_KAFKA_BOOTSTRAP), starts every service as its own process, then measures:
the SQL floor, end-to-end throughput and latency, latency at a fixed rate, HTTP ingest,
a hot item under 64 concurrent redeemers, each service's peak memory, and the ledger's
liability report on a 10M-row journal (BENCH_LIABILITY_ROWS), check-ins through the pipeline
(BENCH_CHECKIN_USERS x 5 days), engagement's leaderboard update lag and rank reads with 1M
ranked users (BENCH_ENGAGEMENT_*, see bench/engagement.py), the dry run of a rule over 1M
stored behaviors (BENCH_DRY_RUN_ROWS) and the console's page times (BENCH_CONSOLE_*, see
bench/console.py).

Sizes come from the environment: BENCH_EVENTS (default 100000), BENCH_USERS (100000),
BENCH_RATE (1000 events/s) and BENCH_RATE_SECONDS (10), BENCH_HOT_SECONDS (10),
BENCH_HOT_CALLERS (64), BENCH_SCALE_EVENTS (20000). BENCH_ONLY=end_to_end,hot_item runs only
those sections (see SECTIONS); BENCH_PROFILE=1 samples every service with py-spy meanwhile
and prints where their CPU went; BENCH_STATEMENTS=1 prints, per section, the SQL statements
that took PostgreSQL the most time (pg_stat_statements, on the bench's own server).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
import os
import platform
import random
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from bench import console as console_bench
from bench import engagement as engagement_bench
from bench import insights as insights_bench
from bench import notifier as notifier_bench
from bench import ratelimit as ratelimit_bench
from bench.dry_run import measure_dry_run
from bench.floor import measure_floor
from bench.liability import measure_liability
from bench.profile import Profiler, summarize
from services.behavior_sensor.domain import behavior_id
from services.devstack import (
    EmbeddedBroker,
    Stack,
    drain,
    free_port,
    start_embedded_postgres,
    stop_embedded_postgres,
)
from services.suite import CONSUMER_GROUPS, SERVICES
from shared.db import asyncpg_kwargs, create_engine, database_url
from shared.events import BehaviorEvent
from shared.messaging.lag import consumer_lag
from shared.metrics import histogram_totals
from shared.settings import DEV_ADMIN_TOKEN, DEV_INGEST_KEY
from tests.push_fakes import PushFakes

ROOT = Path(__file__).resolve().parent.parent
ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
ACTION = "bench_tick"
SOURCE = "bench"
STATEMENTS = bool(os.environ.get("BENCH_STATEMENTS"))


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class ZipfUsers:
    """user_ids drawn with probability proportional to 1/rank^s."""

    def __init__(self, count: int, s: float = 1.1, seed: int = 7) -> None:
        self.ids = [f"bench_u{i}" for i in range(count)]
        self.cum = list(itertools.accumulate(1 / (k**s) for k in range(1, count + 1)))
        self.rng = random.Random(seed)

    def draw(self) -> str:
        return self.ids[bisect.bisect(self.cum, self.rng.random() * self.cum[-1])]


def envelopes(n: int, users: ZipfUsers, dup_ratio: float) -> list[dict[str, Any]]:
    """n messages of which about dup_ratio repeat an earlier event (same source and id)."""
    now = datetime.now(UTC).isoformat()
    out: list[dict[str, Any]] = []
    for _ in range(n):
        if out and users.rng.random() < dup_ratio:
            out.append(users.rng.choice(out))
            continue
        out.append(
            {
                "event_id": uuid.uuid4().hex,
                "source": SOURCE,
                "user_id": users.draw(),
                "action": ACTION,
                "occurred_at": now,
                "attributes": {},
            }
        )
    return out


# Latencies end at the commit that made a row visible (PostgreSQL's commit timestamps, which
# the bench turns on for its own server); on a server without them, at the row's own
# timestamp column, which is its transaction's start and so reads a little short.
COMMIT_TIMESTAMPS = {"on": False}


def committed_at(fallback_column: str) -> str:
    if COMMIT_TIMESTAMPS["on"]:
        return "extract(epoch FROM pg_xact_commit_timestamp(xmin))"
    return f"extract(epoch FROM {fallback_column})"


async def prepare_server(server_url: str, scratch_server: bool) -> tuple[bool, bool]:
    """Turn on track_commit_timestamp (a restart) on the bench's own server, and with
    BENCH_STATEMENTS pg_stat_statements too; report whether each is on (or not wanted)."""
    conn = await asyncpg.connect(**asyncpg_kwargs(database_url(server_url, "postgres")))
    try:
        on = await conn.fetchval("SHOW track_commit_timestamp") == "on"
        preload = await conn.fetchval("SHOW shared_preload_libraries")
        statements = not STATEMENTS or "pg_stat_statements" in preload
        if not on and scratch_server:
            await conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
        if not statements and scratch_server:
            await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    finally:
        await conn.close()
    return bool(on), statements


class Statements:
    """With BENCH_STATEMENTS: PostgreSQL's time by statement, over all the services'
    databases, from a reset at a section's start to its end."""

    def __init__(self, server_url: str) -> None:
        self.url = database_url(server_url, "postgres")

    async def _run(self, sql: str) -> list[Any]:
        conn = await asyncpg.connect(**asyncpg_kwargs(self.url))
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    async def reset(self) -> None:
        if STATEMENTS:
            await self._run("SELECT pg_stat_statements_reset()")

    async def report(self, section: str, results: dict[str, Any], top: int = 15) -> None:
        if not STATEMENTS:
            return
        rows = await self._run(
            "SELECT d.datname AS db, s.calls, s.rows, s.total_exec_time AS ms, s.query, "
            "s.shared_blks_hit + s.shared_blks_read AS blocks "
            "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            "ORDER BY s.total_exec_time DESC"
        )
        total = sum(r["ms"] for r in rows) or 1.0
        kept = [
            {
                "db": r["db"].removeprefix("jifen_"),
                "calls": r["calls"],
                "rows": r["rows"],
                "total_ms": round(r["ms"], 1),
                "share": round(r["ms"] / total, 3),
                "blocks_per_call": round(r["blocks"] / max(r["calls"], 1)),
                "query": " ".join(r["query"].split())[:300],
            }
            for r in rows[:top]
        ]
        results.setdefault("statements", {})[section] = {"total_ms": total, "top": kept}
        print(f"  PostgreSQL statement time in {section}: {total:,.0f} ms", flush=True)
        for k in kept:
            print(
                f"    {k['share']:6.1%} {k['total_ms']:9,.0f} ms {k['calls']:7} calls "
                f"{k['rows']:8} rows {k['blocks_per_call']:6} blk/call  {k['db']:15} "
                f"{k['query'][:100]}",
                flush=True,
            )


class Ledger:
    """Reads credits straight from the ledger's database (the measurement, not the product)."""

    def __init__(self, server_url: str) -> None:
        self.engine = create_engine(database_url(server_url, "jifen_rewards_ledger"), pool_size=2)

    async def last_id(self) -> int:
        async with self.engine.connect() as conn:
            return int(
                (
                    await conn.execute(text("SELECT coalesce(max(id), 0) FROM journal_entries"))
                ).scalar_one()
            )

    async def credits_since(self, after_id: int, expected: int) -> int:
        """Credits committed after journal entry `after_id`, counted only once there can be
        `expected` of them (ids only grow, so fewer new ids than that means fewer credits):
        the count scans every new entry, and polling it costs the database being measured."""
        async with self.engine.connect() as conn:
            top = (await conn.execute(text("SELECT max(id) FROM journal_entries"))).scalar()
            if (top or 0) - after_id < expected:
                return 0
            sql = "SELECT count(*) FROM journal_entries WHERE id > :a AND kind = 'credit'"
            return int((await conn.execute(text(sql), {"a": after_id})).scalar_one())

    async def credit_times(self, after_id: int) -> dict[str, float]:
        """When each credit became visible: its transaction's commit."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    f"SELECT reference, {committed_at('created_at')} AS at FROM journal_entries "
                    "WHERE id > :a AND kind = 'credit'"
                ),
                {"a": after_id},
            )
            return {r.reference: float(r.at) for r in rows}

    async def double_debits(self, references: list[str]) -> int:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT reference FROM journal_entries WHERE kind = 'debit' "
                    "AND reference = ANY(:refs) GROUP BY reference HAVING count(*) > 1"
                ),
                {"refs": references},
            )
            return len(list(rows))


async def produce_and_wait(
    producer: AIOKafkaProducer,
    ledger: Ledger,
    events: list[dict[str, Any]],
    rate: float | None,
    timeout: float,
    server_url: str | None = None,
) -> dict[str, Any]:
    """Produce `events` (as fast as possible, or at `rate`/s), wait until every distinct one is
    credited; returns throughput and produce-to-credit latency (and, given the database server,
    how that latency builds up stage by stage)."""
    start_id = await ledger.last_id()
    sent_at: dict[str, float] = {}
    event_ids: dict[str, str] = {}
    first = time.time()
    tick = 0.01
    per_tick = max(1, int((rate or 0) * tick))
    for i, event in enumerate(events):
        bid = behavior_id(event["source"], event["event_id"])
        sent_at.setdefault(bid, time.time())
        event_ids[bid] = event["event_id"]
        await producer.send(
            "upstream.events", json.dumps(event).encode(), key=event["user_id"].encode()
        )
        if rate and (i + 1) % per_tick == 0:
            delay = first + (i + 1) / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
    await producer.flush()
    produced = time.time()
    expected = len(sent_at)
    deadline = time.monotonic() + timeout
    credited = 0
    while time.monotonic() < deadline:
        credited = await ledger.credits_since(start_id, expected)
        if credited >= expected:
            break
        await asyncio.sleep(0.25)
    times = await ledger.credit_times(start_id)
    latencies = [times[b] - t for b, t in sent_at.items() if b in times]
    last = max(times.values()) if times else produced
    stages = {}
    if server_url is not None:
        stages = await stage_latencies(server_url, sent_at, event_ids, times)
    return {
        "stages_ms": stages,
        "messages": len(events),
        "distinct": expected,
        "credited": len(times),
        "events_per_s": len(times) / max(last - first, 1e-9),
        "produce_s": produced - first,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def load_client(headers: dict[str, str]) -> aiohttp.ClientSession:
    """The load generator's client. Not httpx: its pool does O(connections x waiting requests)
    work per request, so with dozens of callers the driver, not the server, was measured."""
    return aiohttp.ClientSession(
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=60),
        connector=aiohttp.TCPConnector(limit=0),
    )


async def fetch_rows(server_url: str, service: str, sql: str, params: dict[str, Any]) -> list[Any]:
    """One read from a service's database, on a short-lived connection."""
    engine = create_engine(database_url(server_url, f"jifen_{service}"), pool_size=1)
    try:
        async with engine.connect() as conn:
            return list(await conn.execute(text(sql), params))
    finally:
        await engine.dispose()


def p50_p99(seconds: list[float]) -> dict[str, float]:
    return {"p50": percentile(seconds, 50) * 1000, "p99": percentile(seconds, 99) * 1000}


async def stage_latencies(
    server_url: str,
    sent_at: dict[str, float],
    event_ids: dict[str, str],
    credited: dict[str, float],
) -> dict[str, dict[str, float]]:
    """p50/p99 from produce to the commit of each stage: the sensor's intake (which, for Kafka
        intake, also processes and queues the behavior), task_progress's behavior history (its
    inbox), the ledger."""
    reached: dict[str, dict[str, float]] = {"sensor committed": {}}
    sensed = await fetch_rows(
        server_url,
        "behavior_sensor",
        f"SELECT event_id, {committed_at('processed_at')} AS p FROM received_events "
        "WHERE source = :s AND event_id = ANY(:ids)",
        {"s": SOURCE, "ids": list(event_ids.values())},
    )
    by_event = {r.event_id: r for r in sensed}
    for bid, eid in event_ids.items():
        if (row := by_event.get(eid)) is not None and row.p is not None:
            reached["sensor committed"][bid] = float(row.p)
    applied = await fetch_rows(
        server_url,
        "task_progress",
        f"SELECT behavior_id, {committed_at('received_at')} AS a FROM behavior_history "
        "WHERE behavior_id = ANY(:ids)",
        {"ids": list(sent_at)},
    )
    reached["task_progress committed"] = {r.behavior_id: float(r.a) for r in applied}
    reached["ledger committed"] = credited
    return {
        stage: p50_p99([at[b] - t for b, t in sent_at.items() if b in at])
        for stage, at in reached.items()
    }


async def http_ingest(
    sensor: str, users: ZipfUsers, total: int, settle: Callable[[], Awaitable[Any]]
) -> dict[str, Any]:
    """Batches of 1000 (4 callers), then single events (32 callers) once the pipeline has
    processed the batches (`settle`): measured during that backlog, the single events had
    been competing with 50,000 behaviors on their way to the ledger."""
    async with load_client({"X-Api-Key": DEV_INGEST_KEY}) as client:

        async def run(batch: int, concurrency: int, count: int) -> tuple[float, float]:
            bodies = [envelopes(batch, users, 0) for _ in range(count // batch)]
            latencies: list[float] = []
            queue = iter(bodies)

            async def worker() -> None:
                for body in queue:
                    t0 = time.perf_counter()
                    payload = body[0] if batch == 1 else {"events": body}
                    async with client.post(f"{sensor}/v1/events", json=payload) as response:
                        response.raise_for_status()
                        await response.read()
                    latencies.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return count / (time.perf_counter() - t0), percentile(latencies, 99) * 1000

        batch_rate, batch_p99 = await run(1000, 4, total)
        await settle()
        single_rate, single_p99 = await run(1, 32, min(total, 10_000))
    return {
        "batch_events_per_s": batch_rate,
        "batch_request_p99_ms": batch_p99,
        "single_events_per_s": single_rate,
        "single_request_p99_ms": single_p99,
    }


async def hot_item(
    exchange: str,
    ledger_url: str,
    ledger: Ledger,
    seconds: float,
    cpu: Callable[[], dict[str, float]],
) -> dict[str, Any]:
    callers = env_int("BENCH_HOT_CALLERS", 64)
    stock = 100_000
    async with httpx.AsyncClient(headers=ADMIN, timeout=30) as client:
        users = [f"hot_{uuid.uuid4().hex[:8]}" for _ in range(callers)]
        for u in users:
            r = await client.post(
                f"{ledger_url}/v1/accounts/{u}/credits",
                json={"points": 10_000_000, "idempotency_key": u, "reason": "bench"},
            )
            r.raise_for_status()
        item = (
            await client.post(
                f"{exchange}/v1/items",
                json={
                    "name": f"hot {uuid.uuid4().hex[:6]}",
                    "category": "bench",
                    "type": "coupon",
                    "points_price": 1,
                    "stock": stock,
                },
            )
        ).json()
    latencies: list[float] = []
    ids: list[str] = []
    outcomes: dict[int, int] = {}
    async with load_client(ADMIN) as load:

        async def caller(user: str) -> None:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                async with load.post(
                    f"{exchange}/v1/redemptions",
                    json={
                        "user_id": user,
                        "item_id": item["id"],
                        "idempotency_key": uuid.uuid4().hex,
                    },
                ) as r:
                    body = await r.read()
                latencies.append(time.perf_counter() - t0)
                outcomes[r.status] = outcomes.get(r.status, 0) + 1
                if r.status in (201, 202):
                    ids.append(json.loads(body)["id"])

        async def pinger(stop: float, done: list[int]) -> None:
            while time.monotonic() < stop:
                async with load.get(f"{exchange}/health/live") as r:
                    r.raise_for_status()
                    await r.read()
                done.append(1)

        # The HTTP floor: the same callers on an endpoint that does nothing at all.
        pings: list[int] = []
        t0 = time.perf_counter()
        await asyncio.gather(*(pinger(time.monotonic() + 3, pings) for _ in users))
        http_floor = len(pings) / (time.perf_counter() - t0)

        stop_at = time.monotonic() + seconds
        batches_before = await redemption_batches(exchange)
        cpu_before = cpu()
        t0 = time.perf_counter()
        await asyncio.gather(*(caller(u) for u in users))
        elapsed = time.perf_counter() - t0
        cpu_after = cpu()
        batches_after = await redemption_batches(exchange)
    async with httpx.AsyncClient(headers=ADMIN, timeout=30) as client:
        after = (await client.get(f"{exchange}/v1/items/{item['id']}")).json()
    batches = batches_after[0] - batches_before[0]
    completed = outcomes.get(201, 0)
    return {
        "callers": callers,
        "http_floor_requests_per_s": http_floor,
        "redemptions_per_s": completed / elapsed,
        "p99_ms": percentile(latencies, 99) * 1000,
        "p50_ms": percentile(latencies, 50) * 1000,
        "statuses": {str(k): v for k, v in sorted(outcomes.items())},
        "oversold": max(0, len(ids) - stock)
        + (1 if after["stock"] < 0 else 0)
        + abs(after["stock"] + len(ids) - stock),
        "double_debits": await ledger.double_debits([f"redemption:{i}" for i in ids]),
        "cpu_ms_per_redemption": cpu_ms_per_event(cpu_before, cpu_after, sum(outcomes.values())),
        "mean_batch": (batches_after[1] - batches_before[1]) / batches if batches else 0.0,
    }


async def redemption_batches(exchange: str) -> tuple[float, float]:
    """(batches, requests in them) so far, from the exchange's batch-size histogram."""
    async with httpx.AsyncClient(timeout=30) as client:
        body = (await client.get(f"{exchange}/metrics")).text
    return histogram_totals(body, "jifen_redemption_batch_size")


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat fields from the state on (field k of proc(5) is index k - 3)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def _cpu_seconds(pid: int, reaped_children: bool = False) -> float:
    fields = _stat(pid)
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_seconds(stack: Stack, broker_pid: int | None) -> dict[str, float]:
    """CPU time used so far by each service, the broker, all PostgreSQL processes and us."""
    out: dict[str, float] = {}
    for name, proc in stack.processes.items():
        with contextlib.suppress(OSError):
            out[name] = _cpu_seconds(proc.pid)
    if broker_pid:
        with contextlib.suppress(OSError):
            out["broker"] = _cpu_seconds(broker_pid)
    # Live backends, plus what exited backends used (counted in the postmaster's children).
    postgres_pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    postgres_pids.add(int(entry.name))
    postgres = 0.0
    for pid in postgres_pids:
        with contextlib.suppress(OSError):
            postmaster = int(_stat(pid)[1]) not in postgres_pids
            postgres += _cpu_seconds(pid, reaped_children=postmaster)
    out["postgres"] = postgres
    times = os.times()
    out["bench driver"] = times.user + times.system
    return out


def cpu_ms_per_event(
    before: dict[str, float], after: dict[str, float], events: int
) -> dict[str, float]:
    return {k: 1000 * (after[k] - before.get(k, 0.0)) / max(events, 1) for k in after}


async def consumer_counts(stack: Stack) -> dict[str, tuple[float, float]]:
    """Per consumer (jifen.<service>.<handler>): batches applied and messages in them so far,
    from every service's /metrics."""
    out: dict[str, tuple[float, float]] = {}
    async with httpx.AsyncClient(timeout=30) as client:
        for service in stack.processes:
            with contextlib.suppress(httpx.HTTPError):
                body = (await client.get(f"{stack.url(service)}/metrics")).text
                for family in text_string_to_metric_families(body):
                    if family.name not in (
                        "jifen_consumer_batch_seconds",
                        "jifen_messages_consumed",
                    ):
                        continue
                    for sample in family.samples:
                        if sample.name not in (
                            "jifen_consumer_batch_seconds_count",
                            "jifen_messages_consumed_total",
                        ):
                            continue
                        group = f"jifen.{sample.labels['consumer']}"
                        batches, messages = out.get(group, (0.0, 0.0))
                        if sample.name.endswith("_count"):
                            batches += sample.value
                        else:
                            messages += sample.value
                        out[group] = (batches, messages)
    return out


async def consumers_after(
    stack: Stack,
    broker_pid: int | None,
    before: dict[str, float],
    counts_before: dict[str, tuple[float, float]],
    credited: int,
    server_url: str,
    bootstrap: str,
) -> dict[str, Any]:
    """What the section's credits left to the other consumers: each group's lag right after
    the last credit, then the wait until every group and outbox is drained, and the CPU per
    credited event counted to that point (the cost of the whole suite keeping up, not only of
    the path to the ledger), with each consumer's mean batch. Call it right after the
    section's last credit."""
    lag = {}
    for group, topics in CONSUMER_GROUPS.items():
        lag[group] = await consumer_lag(bootstrap, group, topics)
    started = time.monotonic()
    drained = await drain(server_url, bootstrap, timeout=600)
    counts = await consumer_counts(stack)
    batches = {}
    for group, (n, messages) in counts.items():
        n0, m0 = counts_before.get(group, (0.0, 0.0))
        batches[group] = (messages - m0) / (n - n0) if n > n0 else 0.0
    return {
        "lag_at_credit": lag,
        "mean_batch": batches,
        "drained_after_s": time.monotonic() - started if drained else None,
        "cpu_ms_per_event": cpu_ms_per_event(before, cpu_seconds(stack, broker_pid), credited),
    }


def consumer_rows(label: str, report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The section's CPU with every consumer drained, and a line per consumer group: its
    service's CPU per credited event and its lag when the last event was credited."""
    cpu = report["cpu_ms_per_event"]
    after = report["drained_after_s"]
    drained = (
        "never drained" if after is None else f"all drained {after:.1f}s after the last credit"
    )
    rows = [cpu_row(f"{label}: CPU per event, all consumers drained", cpu)]
    rows[0] = (rows[0][0], rows[0][1], f"{drained}; {rows[0][2]}")
    for group, lag in report["lag_at_credit"].items():
        service = group.split(".")[1]
        rows.append(
            (
                f"  consumer {group.removeprefix('jifen.')}",
                f"{cpu.get(service, 0.0):.3f} ms",
                f"{service}'s CPU per event; lag {lag:,} at the last credit; "
                f"mean batch {report.get('mean_batch', {}).get(group, 0.0):,.1f}",
            )
        )
    return rows


async def task_progress_alone(
    producer: AIOKafkaProducer, server_url: str, users: ZipfUsers, n: int
) -> dict[str, Any]:
    """Behaviors produced straight to behavior.events: how fast task_progress turns them into
    grants (the sensor is not involved; the ledger still credits the grants meanwhile)."""
    engine = create_engine(database_url(server_url, "jifen_task_progress"), pool_size=1)
    count_sql = text("SELECT count(*) FROM grants WHERE causation_event_id LIKE :p")
    prefix = f"scale{uuid.uuid4().hex[:6]}:"
    now = datetime.now(UTC)
    first = time.time()
    for i in range(n):
        user = users.draw()
        event = BehaviorEvent(
            behavior_id=f"{prefix}{i}",
            event_id=f"{prefix}{i}",
            source=SOURCE,
            user_id=user,
            action=ACTION,
            occurred_at=now,
            received_at=now,
        )
        await producer.send("behavior.events", event.model_dump_json().encode(), key=user.encode())
    await producer.flush()
    done = 0
    deadline = time.monotonic() + max(120, n / 100)
    async with engine.connect() as conn:
        while time.monotonic() < deadline:
            done = int((await conn.execute(count_sql, {"p": f"{prefix}%"})).scalar_one())
            if done >= n:
                break
            await asyncio.sleep(0.2)
    elapsed = time.time() - first
    await engine.dispose()
    return {"distinct": n, "credited": done, "events_per_s": done / elapsed}


async def task_progress_scaling(
    stack: Stack, producer: AIOKafkaProducer, server_url: str, users: ZipfUsers, n: int
) -> dict[str, Any]:
    results = {"1": await task_progress_alone(producer, server_url, users, n)}
    name = stack.start_service("task_progress", replica=1, role="worker")
    try:
        await asyncio.to_thread(stack.wait_ready, 120, (name,))
        await asyncio.sleep(8)  # let the group rebalance the partitions across both
        results["2"] = await task_progress_alone(producer, server_url, users, n)
    finally:
        await asyncio.to_thread(stack.stop_service, name)
    return results


def peak_memory_mb(stack: Stack) -> dict[str, float]:
    out = {}
    for service, proc in stack.processes.items():
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                out[service] = int(line.split()[1]) / 1024
    return out


SECTIONS = (
    "idle",
    "floor",
    "end_to_end",
    "fixed_rate",
    "task_progress_scaling",
    "http_ingest",
    "hot_item",
    "checkins",
    "engagement",
    "insights",
    "dry_run",
    "liability",
    "console",
    "notifier",
    "ratelimit",
)
CHECKIN_ACTION = "bench_checkin"
CHECKIN_DAYS = 5


def checkin_envelopes(users: int, days: int) -> list[dict[str, Any]]:
    """Each user checks in on each of the last `days` business days, in day order (one
    partition per user keeps them in that order): every check-in pays one grant."""
    today = datetime.now(UTC)
    out = []
    for back in range(days - 1, -1, -1):
        at = (today - timedelta(days=back)).isoformat()
        out += [
            {
                "event_id": uuid.uuid4().hex,
                "source": SOURCE,
                "user_id": f"checkin-{u}",
                "action": CHECKIN_ACTION,
                "occurred_at": at,
                "attributes": {},
            }
            for u in range(users)
        ]
    return out


async def settle_database(server_url: str, timeout: float = 120) -> float:
    """Wait until PostgreSQL's autovacuum workers are done (or `timeout` passes), so that a
    section does not measure the clean-up of the one before: with the 100k-event run's tables
    still being vacuumed, PostgreSQL used 0.50 ms of CPU per hot-item redemption, against
    0.30-0.39 ms once quiet (docs/BENCHMARKS.md, seventh round). Returns the wait."""
    engine = create_engine(database_url(server_url, "postgres"), pool_size=1, max_overflow=0)
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            async with engine.connect() as conn:
                busy = (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE backend_type = 'autovacuum worker'"
                        )
                    )
                ).scalar_one()
            if not busy:
                break
            await asyncio.sleep(1)
    finally:
        await engine.dispose()
    waited = time.monotonic() - started
    if waited >= 1:
        print(f"  waited {waited:.0f}s for autovacuum to finish", flush=True)
    return waited


def wanted(section: str) -> bool:
    only = os.environ.get("BENCH_ONLY", "")
    return not only or section in {s.strip() for s in only.split(",")}


async def measure(
    stack: Stack,
    database_url_: str,
    bootstrap: str,
    broker_pid: int | None,
    fakes: PushFakes | None = None,
) -> dict[str, Any]:
    n = env_int("BENCH_EVENTS", 100_000)
    users = ZipfUsers(env_int("BENCH_USERS", 100_000))
    results: dict[str, Any] = {}
    async with httpx.AsyncClient(headers=ADMIN, timeout=30) as client:
        r = await client.post(
            f"{stack.url('task_progress')}/v1/tasks",
            json={"name": "bench: 1 point per tick", "action": ACTION, "reward_points": 1},
        )
        r.raise_for_status()
        ladder = [{"day": d, "amount": d} for d in range(1, 8)]
        r = await client.post(
            f"{stack.url('task_progress')}/v1/tasks",
            json={
                "name": "bench: daily check-in",
                "action": CHECKIN_ACTION,
                "kind": "checkin",
                "ladder": ladder,
            },
        )
        r.raise_for_status()
    if wanted("idle"):
        seconds = env_int("BENCH_IDLE_SECONDS", 10)
        print(f"idle: the suite doing nothing for {seconds}s ...", flush=True)
        await drain(database_url_, bootstrap, timeout=120)
        before = cpu_seconds(stack, broker_pid)
        await asyncio.sleep(seconds)
        after = cpu_seconds(stack, broker_pid)
        # ms of CPU per second: what polling costs with no work at all
        results["idle_cpu_ms_per_s"] = {
            k: 1000 * (after[k] - before.get(k, 0.0)) / seconds for k in after
        }
    if wanted("floor"):
        print(f"floor: {n} credits as raw batched SQL ...", flush=True)
        results["floor_events_per_s"] = await measure_floor(
            database_url_, [users.draw() for _ in range(n)]
        )
    ledger = Ledger(database_url_)
    statements = Statements(database_url_)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        if wanted("end_to_end"):
            print(f"end to end: {n} events (10% duplicates, Zipf users) ...", flush=True)
            await statements.reset()
            counts_before = await consumer_counts(stack)
            before = cpu_seconds(stack, broker_pid)
            results["end_to_end"] = await produce_and_wait(
                producer, ledger, envelopes(n, users, 0.10), None, timeout=max(300, n / 200)
            )
            results["end_to_end"]["cpu_ms_per_event"] = cpu_ms_per_event(
                before, cpu_seconds(stack, broker_pid), results["end_to_end"]["credited"]
            )
            results["end_to_end"]["consumers"] = await consumers_after(
                stack,
                broker_pid,
                before,
                counts_before,
                results["end_to_end"]["credited"],
                database_url_,
                bootstrap,
            )
            await statements.report("end_to_end", results)
        if wanted("fixed_rate"):
            # Before the replica test: its second consumer leaving makes the group rebalance.
            await drain(database_url_, bootstrap, timeout=600)  # start from an idle pipeline
            await settle_database(database_url_)
            rate, secs = env_int("BENCH_RATE", 1000), env_int("BENCH_RATE_SECONDS", 10)
            print(f"fixed rate: {rate}/s for {secs}s ...", flush=True)
            await statements.reset()
            counts_before = await consumer_counts(stack)
            before = cpu_seconds(stack, broker_pid)
            results["fixed_rate"] = {
                "rate": rate,
                **await produce_and_wait(
                    producer,
                    ledger,
                    envelopes(rate * secs, users, 0),
                    rate,
                    timeout=120,
                    server_url=database_url_,
                ),
            }
            results["fixed_rate"]["cpu_ms_per_event"] = cpu_ms_per_event(
                before, cpu_seconds(stack, broker_pid), results["fixed_rate"]["credited"]
            )
            results["fixed_rate"]["consumers"] = await consumers_after(
                stack,
                broker_pid,
                before,
                counts_before,
                results["fixed_rate"]["credited"],
                database_url_,
                bootstrap,
            )
            await statements.report("fixed_rate", results)
        if wanted("task_progress_scaling"):
            await drain(database_url_, bootstrap, timeout=600)
            await settle_database(database_url_)
            scale_n = env_int("BENCH_SCALE_EVENTS", 20_000)
            print(f"task_progress with 1 and 2 replicas: {scale_n} behaviors each ...", flush=True)
            results["task_progress_scaling"] = await task_progress_scaling(
                stack, producer, database_url_, users, scale_n
            )
        if wanted("checkins"):
            await drain(database_url_, bootstrap, timeout=600)
            await settle_database(database_url_)
            checkin_users = env_int("BENCH_CHECKIN_USERS", 10_000)
            print(f"check-ins: {checkin_users} users x {CHECKIN_DAYS} days ...", flush=True)
            before = cpu_seconds(stack, broker_pid)
            results["checkins"] = await produce_and_wait(
                producer,
                ledger,
                checkin_envelopes(checkin_users, CHECKIN_DAYS),
                None,
                timeout=600,
            )
            results["checkins"]["cpu_ms_per_event"] = cpu_ms_per_event(
                before, cpu_seconds(stack, broker_pid), results["checkins"]["credited"]
            )
    finally:
        await producer.stop()
    if wanted("http_ingest"):
        print("http ingest ...", flush=True)
        results["http_ingest"] = await http_ingest(
            stack.url("behavior_sensor"),
            users,
            min(n, 50_000),
            lambda: drain(database_url_, bootstrap, timeout=600),
        )
    if wanted("hot_item"):
        await drain(database_url_, bootstrap, timeout=600)
        await settle_database(database_url_)
        print(f"hot item: {env_int('BENCH_HOT_CALLERS', 64)} concurrent redeemers ...", flush=True)
        await statements.reset()
        results["hot_item"] = await hot_item(
            stack.url("exchange"),
            stack.url("rewards_ledger"),
            ledger,
            env_int("BENCH_HOT_SECONDS", 10),
            cpu=lambda: cpu_seconds(stack, broker_pid),
        )
        await statements.report("hot_item", results)
    await ledger.engine.dispose()
    results["peak_memory_mb"] = peak_memory_mb(stack)
    if wanted("engagement"):
        await drain(database_url_, bootstrap, timeout=600)
        await settle_database(database_url_)
        print("engagement: update lag, and rank reads with 1M ranked users ...", flush=True)
        results.update(await engagement_bench.measure(stack, database_url_))
    if wanted("insights"):
        await drain(database_url_, bootstrap, timeout=600)
        await settle_database(database_url_)
        print("insights: consumer, KPI queries over 90 days, recommendations ...", flush=True)
        end_to_end = results.get("end_to_end", {}).get("events_per_s")
        results.update(await insights_bench.measure(stack, database_url_, bootstrap, end_to_end))
    if wanted("dry_run"):
        rows = env_int("BENCH_DRY_RUN_ROWS", 1_000_000)
        print(f"dry run of a rule over {rows:,} stored behaviors ...", flush=True)
        results["dry_run"] = await measure_dry_run(database_url_, rows)
    if wanted("liability"):  # last: its 10M rows must not weigh on the sections above
        rows = env_int("BENCH_LIABILITY_ROWS", 10_000_000)
        print(f"liability report: generating {rows:,} journal rows ...", flush=True)
        results["liability"] = await measure_liability(database_url_, rows)
    if wanted("console"):  # after the rest: the pages with the bench's data loaded
        print("console: each page's server time ...", flush=True)
        results.update(await console_bench.measure(stack, database_url_))
    if wanted("ratelimit"):
        print("rate limits: the middleware's cost, and one user flooding ...", flush=True)
        results.update(await ratelimit_bench.measure(stack))
    if wanted("notifier") and fakes is not None:  # last: its 1M lots stay in the ledger
        await drain(database_url_, bootstrap, timeout=600)
        print("notifier: campaign fan-out to fake APNs/FCM, expiry scan of 1M lots ...", flush=True)
        results.update(await notifier_bench.measure(stack, database_url_, fakes))
    if "end_to_end" in results and "floor_events_per_s" in results:
        e2e = results["end_to_end"]["events_per_s"]
        results["end_to_end"]["ratio_to_floor"] = e2e / results["floor_events_per_s"]
    return results


def cpu_row(label: str, cpu: dict[str, float]) -> tuple[str, str, str]:
    busiest = sorted(cpu.items(), key=lambda kv: -kv[1])
    return label, f"{sum(cpu.values()):.2f} ms", ", ".join(f"{k} {v:.2f}" for k, v in busiest)


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []
    if "machine" in results:
        m = results["machine"]
        rows.append(("machine", f"{m['cpus']} CPUs", f"{m['cpu_model']}; Python {m['python']}"))
    if "idle_cpu_ms_per_s" in results:
        idle = results["idle_cpu_ms_per_s"]
        label, total, detail = cpu_row("idle: CPU per second", idle)
        rows.append((label, f"{total.removesuffix(' ms')} ms/s", detail))
    if "floor_events_per_s" in results:
        floor = results["floor_events_per_s"]
        rows.append(("floor: raw batched SQL credits", f"{floor:,.0f} events/s", ""))
    if "end_to_end" in results:
        e2e = results["end_to_end"]
        ratio = f"; {e2e['ratio_to_floor']:.2f} of floor" if "ratio_to_floor" in e2e else ""
        rows += [
            (
                "end to end: credited",
                f"{e2e['events_per_s']:,.0f} events/s",
                f"{e2e['credited']:,}/{e2e['distinct']:,} credited{ratio}",
            ),
            (
                "end to end: produce -> credit",
                f"p50 {e2e['p50_ms']:,.0f} ms",
                f"p95 {e2e['p95_ms']:,.0f} ms, p99 {e2e['p99_ms']:,.0f} ms",
            ),
        ]
        if "cpu_ms_per_event" in e2e:
            rows.append(cpu_row("end to end: CPU per credited event", e2e["cpu_ms_per_event"]))
        if "consumers" in e2e:
            rows += consumer_rows("end to end", e2e["consumers"])
    for replicas, run in sorted(results.get("task_progress_scaling", {}).items()):
        rows.append(
            (
                f"task_progress alone, {replicas} replica(s)",
                f"{run['events_per_s']:,.0f} events/s",
                f"{run['credited']:,}/{run['distinct']:,} behaviors turned into grants",
            )
        )
    if "fixed_rate" in results:
        fixed = results["fixed_rate"]
        rows.append(
            (
                f"latency at {fixed['rate']:,}/s",
                f"p99 {fixed['p99_ms']:,.0f} ms",
                f"p50 {fixed['p50_ms']:,.0f} ms, p95 {fixed['p95_ms']:,.0f} ms; "
                f"{fixed['credited']:,}/{fixed['distinct']:,} credited",
            )
        )
        for stage, lat in fixed.get("stages_ms", {}).items():
            rows.append(
                (f"  produce -> {stage}", f"p99 {lat['p99']:,.0f} ms", f"p50 {lat['p50']:,.0f} ms")
            )
        if "cpu_ms_per_event" in fixed:
            rows.append(cpu_row("  CPU per credited event", fixed["cpu_ms_per_event"]))
        if "consumers" in fixed:
            rows += consumer_rows(f"  at {fixed['rate']:,}/s", fixed["consumers"])
    if "http_ingest" in results:
        http = results["http_ingest"]
        rows += [
            (
                "HTTP ingest, batches of 1000",
                f"{http['batch_events_per_s']:,.0f} events/s",
                f"request p99 {http['batch_request_p99_ms']:,.0f} ms",
            ),
            (
                "HTTP ingest, single events",
                f"{http['single_events_per_s']:,.0f} events/s",
                f"request p99 {http['single_request_p99_ms']:,.0f} ms",
            ),
        ]
    if "hot_item" in results:
        hot = results["hot_item"]
        rows.append(
            (
                f"hot item, {hot['callers']} callers",
                f"{hot['redemptions_per_s']:,.0f} redemptions/s",
                f"p99 {hot['p99_ms']:,.0f} ms; oversold {hot['oversold']}; "
                f"double debits {hot['double_debits']}; mean batch {hot['mean_batch']:.1f}; "
                f"{hot['statuses']}",
            )
        )
        rows.append(
            (
                "  same callers, empty endpoint",
                f"{hot['http_floor_requests_per_s']:,.0f} requests/s",
                "GET /health/live: the HTTP floor of one service process here",
            )
        )
        rows.append(cpu_row("hot item: CPU per request", hot["cpu_ms_per_redemption"]))
    if "checkins" in results:
        checkins = results["checkins"]
        rows.append(
            (
                "check-ins through the pipeline",
                f"{checkins['events_per_s']:,.0f} check-ins/s",
                f"p99 {checkins['p99_ms']:,.0f} ms; {checkins['credited']:,}/"
                f"{checkins['distinct']:,} paid; streaks of {CHECKIN_DAYS} days",
            )
        )
        if "cpu_ms_per_event" in checkins:
            rows.append(cpu_row("  CPU per check-in", checkins["cpu_ms_per_event"]))
    rows += engagement_bench.rows(results)
    rows += insights_bench.rows(results)
    if "dry_run" in results:
        dry = results["dry_run"]
        rows.append(
            (
                f"dry run over {dry['rows']:,} stored behaviors",
                f"{dry['seconds']:.1f} s",
                f"{dry['behaviors_per_s']:,.0f} behaviors/s; {dry['completions']:,} completions "
                f"of {dry['users']:,} users; rows built in {dry['build_s']:.0f} s",
            )
        )
    if "liability" in results:
        liability = results["liability"]
        rows.append(
            (
                f"liability report, {liability['journal_rows']:,} journal rows",
                f"{liability['median_s']:.2f} s",
                f"median of 5; first {liability['first_s']:.2f} s, max {liability['max_s']:.2f} s; "
                f"{liability['accounts']:,} accounts; rows built in {liability['build_s']:.0f} s",
            )
        )
    rows += console_bench.rows(results)
    rows += notifier_bench.rows(results)
    rows += ratelimit_bench.rows(results)
    rows += [
        (f"peak memory: {s}", f"{mb:,.0f} MiB", "") for s, mb in results["peak_memory_mb"].items()
    ]
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    lines = [f"{'measure':<{width}}  {'result':>{vwidth}}  notes", "-" * (width + vwidth + 40)]
    lines += [f"{a:<{width}}  {b:>{vwidth}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="jifen-bench-"))
    database = os.environ.get("JIFEN_DATABASE_URL")
    broker = None
    if not database:
        database = start_embedded_postgres(scratch / "postgres")
        if not all(asyncio.run(prepare_server(database, scratch_server=True))):
            stop_embedded_postgres()  # the settings take effect at the next start
            database = start_embedded_postgres(scratch / "postgres")
    COMMIT_TIMESTAMPS["on"], statements_on = asyncio.run(
        prepare_server(database, scratch_server=False)
    )
    if STATEMENTS and not statements_on:
        raise SystemExit("BENCH_STATEMENTS needs pg_stat_statements in shared_preload_libraries")
    if not COMMIT_TIMESTAMPS["on"]:
        print("track_commit_timestamp is off: latencies end at transaction starts", flush=True)
    bootstrap = os.environ.get("JIFEN_KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = EmbeddedBroker(port=free_port())
        bootstrap = broker.start(log_path=scratch / "broker.log")
    # the notifier sends to fake APNs (HTTP/2) and FCM servers in processes of their own
    fakes = PushFakes(scratch / "push").start()
    stack = Stack(
        database_url=database,
        kafka_bootstrap=bootstrap,
        base_port=env_int("BENCH_BASE_PORT", 18000),
        env={
            "JIFEN_LOG_LEVEL": "WARNING",
            "JIFEN_FARMING_DEFAULT_LIMIT": "100000000",
            # the console section's diverted behaviors
            "JIFEN_FARMING_ACTION_LIMITS": json.dumps(
                {console_bench.FARM_ACTION: console_bench.FARM_LIMIT}
            ),
            "JIFEN_SEED_DEMO": "false",
            # the bench's clients are load generators; the limits are measured on a replica
            # of their own (bench/ratelimit.py)
            "JIFEN_RATE_LIMIT_KEY_PER_S": "0",
            "JIFEN_RATE_LIMIT_USER_PER_S": "0",
            "JIFEN_RATE_LIMIT_IP_PER_S": "0",
            **fakes.env(),
        },
        log_dir=scratch / "logs",
    )
    try:
        print(f"starting the suite (logs in {scratch / 'logs'}) ...", flush=True)
        stack.start(timeout=180)
        profiler = None
        if os.environ.get("BENCH_PROFILE"):
            profiler = Profiler(ROOT / "results")
            profiler.start({name: proc.pid for name, proc in stack.processes.items()})
        results = asyncio.run(
            measure(
                stack,
                database,
                bootstrap,
                broker.process.pid if broker and broker.process else None,
                fakes,
            )
        )
        if profiler is not None:
            for profile in profiler.stop().values():
                print(summarize(profile), flush=True)
    finally:
        stack.stop()
        fakes.stop()
        if broker:
            broker.stop()
        stop_embedded_postgres()
    results["latency_ends_at"] = "commit" if COMMIT_TIMESTAMPS["on"] else "transaction start"
    results["machine"] = {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "at": datetime.now(UTC).isoformat(),
        "services": list(SERVICES),
    }
    print()
    print(table(results))
    out = ROOT / "results" / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nsaved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
