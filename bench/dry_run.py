"""The dry run of a draft rule over 1M stored behaviors (BENCH_DRY_RUN_ROWS): the behavior
history of a scratch task_progress database, migrated like any other and filled by
PostgreSQL itself, then `POST /v1/tasks/simulate`'s use case timed in process (the same
code the endpoint runs, without the HTTP hop)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from services.task_progress.schemas import SimulateRequest
from services.task_progress.simulate import simulate
from shared.db import Database, asyncpg_kwargs, create_engine, database_url, ensure_database
from shared.migrate import upgrade

ACTION = "bench_like"
RULE = {
    "name": "bench: 3 likes -> 1 point, 20 times a day, plus 1 growth",
    "action": ACTION,
    "target_count": 3,
    "reward_points": 1,
    "period": "day",
    "max_per_period": 20,
    "extra_rewards": [{"reward_type": "growth", "amount": 1}],
}


async def measure_dry_run(server_url: str, rows: int, users: int = 5_000) -> dict[str, Any]:
    name = f"jifen_bench_dry_run_{uuid.uuid4().hex[:8]}"
    await ensure_database(server_url, name)
    url = database_url(server_url, name)
    await asyncio.to_thread(upgrade, "services.task_progress", url.render_as_string(False))
    end = datetime.now(UTC)
    start = end - timedelta(days=30)
    conn = await asyncpg.connect(**asyncpg_kwargs(url))  # type: ignore[arg-type]
    try:
        t0 = time.perf_counter()
        await conn.execute(
            "INSERT INTO behavior_history (behavior_id, user_id, action, occurred_at, attributes) "
            "SELECT md5(i::text), 'u' || (i % $2), $3, "
            "$4::timestamptz + (i * (interval '30 days' / $1)), '{}'::jsonb "
            "FROM generate_series(1, $1) i",
            rows,
            users,
            ACTION,
            start,
        )
        await conn.execute("VACUUM ANALYZE behavior_history")
        built_s = time.perf_counter() - t0
    finally:
        await conn.close()
    db = Database(create_engine(url, pool_size=1, max_overflow=0))
    body = SimulateRequest.model_validate(
        {"rule": RULE, "from": start.isoformat(), "to": end.isoformat()}
    )
    try:
        async with db.snapshot() as session:
            t0 = time.perf_counter()
            result = await simulate(session, body, ZoneInfo("Asia/Shanghai"))
            seconds = time.perf_counter() - t0
    finally:
        await db.dispose()
    return {
        "rows": rows,
        "seconds": seconds,
        "behaviors_per_s": result["behaviors_scanned"] / seconds,
        "completions": result["completions"],
        "users": result["users_matched"],
        "build_s": built_s,
    }
