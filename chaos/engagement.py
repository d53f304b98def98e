"""Engagement's invariants after a chaos cycle (chaos/runner.py calls these; see
docs/ENGAGEMENT.md for the wiring).

- `prepare`: the boards and the badge the checks watch, created once per environment, before
  any cycle sends events (a board counts what it consumes after it exists). The badge pays
  no reward, so the runner's balance and credit checks see nothing they did not send.
- `check`: for the cycle's users (fresh each cycle):
  1. every board's score per period in PostgreSQL equals what the ledger's journal says they
     earned in that period (credits, adjustments and releases, less clawbacks), computed
     independently from the ledger's own database;
  2. the index agrees with PostgreSQL for every open period (a process killed between its
     commit and its index write must have been caught up);
  3. no badge and no prize was paid twice: each award or prize with a grant has exactly one
     credit at the ledger under that grant's key, and nothing was credited under an
     engagement grant key without its award or result.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import redis.asyncio as aioredis

from services.engagement.domain import badge_grant_id, period_key
from services.engagement.index import board_key
from shared.db import asyncpg_kwargs, database_url

BOARDS = (
    {"code": "chaos-points-day", "metric": "points_earned", "window": "day"},
    {"code": "chaos-points-week", "metric": "points_earned", "window": "week"},
    {"code": "chaos-points-all", "metric": "points_earned", "window": "all_time"},
)
# No reward: the runner's own checks count every credit its users get, and a badge reward
# is one they did not send. Rewarding badges are still checked (paid once, never unawarded).
BADGE = {
    "code": "chaos-ticks",
    "name": "chaos: three ticks",
    "criteria": {"type": "action_count", "action": "chaos_tick", "count": 3},
}


async def prepare(client: httpx.AsyncClient, engagement_url: str) -> None:
    """Create the watched boards and badge (a 409 means they exist already)."""
    for board in BOARDS:
        r = await client.post(
            f"{engagement_url}/v1/leaderboards", json={**board, "name": board["code"]}
        )
        if r.status_code not in (201, 409):
            r.raise_for_status()
    r = await client.post(f"{engagement_url}/v1/badges", json=BADGE)
    if r.status_code not in (201, 409):
        r.raise_for_status()


async def _rows(server_url: str, db: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(**asyncpg_kwargs(database_url(server_url, db)))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


# What the ledger's journal says each movement added to what was earned (the rule of
# services/engagement/domain.earned_delta, written again here against the journal's columns).
EARNED_FROM_JOURNAL = (
    "SELECT user_id, asset, created_at, "
    "CASE WHEN kind IN ('credit', 'adjustment', 'release') THEN amount "
    "WHEN kind = 'clawback' THEN amount - debt_delta ELSE 0 END AS earned "
    "FROM journal_entries WHERE user_id = ANY($1::text[])"
)


async def check(
    server_url: str, redis_url: str, users: list[str], tz: str = "Asia/Shanghai"
) -> list[str]:
    """The problems found for these users (empty when every invariant holds)."""
    problems: list[str] = []
    zone = ZoneInfo(tz)
    boards = await _rows(
        server_url,
        "jifen_engagement",
        'SELECT code, metric, "window" FROM boards WHERE code = ANY($1::text[])',
        [b["code"] for b in BOARDS],
    )
    expected: dict[tuple[str, str, str], int] = {}
    for e in await _rows(server_url, "jifen_rewards_ledger", EARNED_FROM_JOURNAL, users):
        if not e["earned"]:
            continue
        at: datetime = e["created_at"]
        for b in boards:
            if {"points_earned": "points", "growth_earned": "growth"}.get(b["metric"]) == e[
                "asset"
            ]:
                key = (b["code"], period_key(b["window"], at, zone), e["user_id"])
                expected[key] = expected.get(key, 0) + int(e["earned"])
    scores = await _rows(
        server_url,
        "jifen_engagement",
        "SELECT s.board_code, s.period_key, s.user_id, s.score, p.status FROM board_scores s "
        "JOIN board_periods p USING (board_code, period_key) "
        "WHERE s.user_id = ANY($1::text[]) AND s.board_code = ANY($2::text[])",
        users,
        [b["code"] for b in boards],
    )
    actual = {(r["board_code"], r["period_key"], r["user_id"]): int(r["score"]) for r in scores}
    for key in sorted(set(expected) | set(actual)):
        want, have = expected.get(key, 0), actual.get(key, 0)
        if want != have:
            problems.append(f"engagement score {key}: {have}, the ledger says {want} earned")
    if len(problems) > 5:
        problems = [*problems[:5], f"... and {len(problems) - 5} more score mismatches"]

    index = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        stale = 0
        for r in scores:
            if r["status"] != "open":
                continue
            held = await index.zscore(board_key(r["board_code"], r["period_key"]), r["user_id"])
            if held is None or int(held) != int(r["score"]):
                stale += 1
        if stale:
            problems.append(f"{stale} leaderboard index entries differ from PostgreSQL")
    finally:
        await index.aclose()

    grants = await _rows(
        server_url,
        "jifen_engagement",
        "SELECT user_id, grant_id, 'badge ' || badge_code AS what FROM user_badges "
        "WHERE grant_id IS NOT NULL AND user_id = ANY($1::text[]) "
        "UNION ALL SELECT user_id, grant_id, 'prize ' || board_code || ' ' || period_key "
        "FROM board_results WHERE grant_id IS NOT NULL AND user_id = ANY($1::text[])",
        users,
    )
    credited = {
        r["key"]: int(r["n"])
        for r in await _rows(
            server_url,
            "jifen_rewards_ledger",
            "SELECT idempotency_key AS key, count(*) AS n FROM journal_entries "
            "WHERE user_id = ANY($1::text[]) AND kind IN ('credit', 'pending') "
            "AND idempotency_key LIKE 'grant:%' GROUP BY 1",
            users,
        )
    }
    paid = {g["grant_id"] for g in grants}
    for g in grants:
        n = credited.get(f"grant:{g['grant_id']}", 0)
        if n != 1:
            problems.append(f"{g['what']} for {g['user_id']} credited {n} times")
    # a badge reward at the ledger with no award behind it (paid by something replayed)
    rewarding = await _rows(
        server_url, "jifen_engagement", "SELECT code FROM badges WHERE reward IS NOT NULL"
    )
    for badge in rewarding:
        for user in users:
            grant_id = badge_grant_id(badge["code"], user)
            if grant_id not in paid and credited.get(f"grant:{grant_id}"):
                problems.append(f"badge {badge['code']} reward credited to {user} without award")
    return problems
