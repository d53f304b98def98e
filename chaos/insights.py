"""Insights' invariants after a chaos cycle (chaos/runner.py calls `check`).

Insights is killed, scaled and replayed from the earliest offset like every consumer; its
rollups must come out exactly as if each message had been applied once:

1. the ledger's counters equal the ledger's own journal, per business day and asset, over
   the whole history: points issued (credits, pending credits), redeemed (debits), refunded
   and expired; and the earn-to-redeem counters equal the lots each debit recorded;
2. every other counter equals the set it counts: DAU = active (day, user) rows, redeemers =
   redeemer (day, user) rows, redemptions = redemption rows, tasks started / completed =
   task-period rows, notifications sent / opened = notification rows, holders = accounts
   at or over the threshold (opens less closes);
3. for the cycle's users: each balance equals the ledger's, every user with an accepted
   behavior is active on some day, and the redemptions known are exactly the exchange's
   completed ones (cancelled ones marked).

Counters and sets are checked for the whole history (not only the cycle's users): a replay
that double-counted anything, in any earlier cycle, shows.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from shared.db import asyncpg_kwargs, database_url

INSIGHTS = "jifen_insights"
HOLDER_THRESHOLD = 100  # the service's default JIFEN_HOLDER_THRESHOLD


async def _rows(server_url: str, db: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(**asyncpg_kwargs(database_url(server_url, db)))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


# The ledger's journal, counted the way insights counts ledger.events.
JOURNAL_COUNTERS = """
SELECT (created_at AT TIME ZONE $1)::date AS day, asset, metric, sum(value)::bigint AS value
FROM (
  SELECT created_at, asset, 'issued' AS metric, amount AS value FROM journal_entries
    WHERE kind = 'credit'
  UNION ALL SELECT created_at, asset, 'issued', pending_delta FROM journal_entries
    WHERE kind = 'pending'
  UNION ALL SELECT created_at, asset, 'redeemed', -amount FROM journal_entries
    WHERE kind = 'debit'
  UNION ALL SELECT created_at, asset, 'refunded', amount FROM journal_entries
    WHERE kind = 'refund'
  UNION ALL SELECT created_at, asset, 'expired', -amount FROM journal_entries
    WHERE kind = 'expire'
) m
GROUP BY 1, 2, 3
HAVING sum(value) <> 0
"""
LEDGER_METRICS = ("issued", "redeemed", "refunded", "expired")

# Each counter against the rows of the set it counts, for every day.
SET_COUNTERS = """
WITH counted AS (
  SELECT day, '' AS asset, 'dau' AS metric, count(*) AS value FROM active_days GROUP BY day
  UNION ALL SELECT day, '', 'redeemers', count(*) FROM redeemer_days GROUP BY day
  UNION ALL SELECT (completed_at AT TIME ZONE $1)::date, '', 'redemptions', count(*)
    FROM redemptions GROUP BY 1
  UNION ALL SELECT day, '', 'tasks_started', count(*) FROM task_periods
    WHERE day IS NOT NULL GROUP BY day
  UNION ALL SELECT day, '', 'tasks_completed', count(*) FROM task_periods
    WHERE completed GROUP BY day
  UNION ALL SELECT day, '', 'push_sent', count(*) FROM notifications WHERE sent GROUP BY day
  UNION ALL SELECT day, '', 'push_opened', count(*) FROM notifications WHERE opened GROUP BY day
),
kept AS (
  SELECT day, asset, metric, value FROM kpi_daily
  WHERE metric IN ('dau', 'redeemers', 'redemptions', 'tasks_started', 'tasks_completed',
                   'push_sent', 'push_opened') AND value <> 0
)
SELECT coalesce(c.day, k.day) AS day, coalesce(c.metric, k.metric) AS metric,
       c.value AS counted, k.value AS kept
FROM counted c FULL JOIN kept k USING (day, asset, metric)
WHERE c.value IS DISTINCT FROM k.value
LIMIT 10
"""
HOLDERS = """
SELECT a.asset, a.holders, coalesce(c.net, 0) AS net FROM
  (SELECT asset, count(*) FILTER (WHERE holder) AS holders,
          count(*) FILTER (WHERE holder <> (balance >= $1)) AS wrong
   FROM balances GROUP BY asset) a
LEFT JOIN
  (SELECT asset, sum(CASE metric WHEN 'holder_opens' THEN value ELSE -value END) AS net
   FROM kpi_daily WHERE metric IN ('holder_opens', 'holder_closes') GROUP BY asset) c
USING (asset)
WHERE a.holders <> coalesce(c.net, 0) OR a.wrong > 0
"""


async def _problems(
    server_url: str, users: list[str], redemption_ids: list[str], tz: str
) -> list[str]:
    problems: list[str] = []
    journal = {
        (r["day"], r["asset"], r["metric"]): int(r["value"])
        for r in await _rows(server_url, "jifen_rewards_ledger", JOURNAL_COUNTERS, tz)
    }
    kept = {
        (r["day"], r["asset"], r["metric"]): int(r["value"])
        for r in await _rows(
            server_url,
            INSIGHTS,
            "SELECT day, asset, metric, value FROM kpi_daily "
            "WHERE metric = ANY($1::text[]) AND value <> 0",
            list(LEDGER_METRICS),
        )
    }
    differ = sorted(k for k in journal.keys() | kept.keys() if journal.get(k) != kept.get(k))
    if differ:
        k = differ[0]
        problems.append(
            f"insights: {len(differ)} ledger counters differ from the journal, e.g. {k}: "
            f"journal {journal.get(k)}, insights {kept.get(k)}"
        )
    for r in await _rows(server_url, INSIGHTS, SET_COUNTERS, tz):
        problems.append(
            f"insights: {r['metric']} on {r['day']} counts {r['kept']} but its set holds "
            f"{r['counted']}"
        )
    for r in await _rows(server_url, INSIGHTS, HOLDERS, HOLDER_THRESHOLD):
        problems.append(f"insights: {r['holders']} {r['asset']} holders, counters say {r['net']}")
    cycle_users = sorted(set(users))
    ledger = {
        (r["user_id"], r["asset"]): int(r["balance"])
        for r in await _rows(
            server_url,
            "jifen_rewards_ledger",
            "SELECT user_id, asset, balance FROM accounts WHERE user_id = ANY($1::text[])",
            cycle_users,
        )
    }
    mine = {
        (r["user_id"], r["asset"]): int(r["balance"])
        for r in await _rows(
            server_url,
            INSIGHTS,
            "SELECT user_id, asset, balance FROM balances WHERE user_id = ANY($1::text[])",
            cycle_users,
        )
    }
    wrong = [a for a in ledger if ledger[a] != mine.get(a, 0)]
    if wrong:
        account = wrong[0]
        problems.append(
            f"insights: {len(wrong)} balances differ from the ledger, e.g. {account}: "
            f"ledger {ledger[account]}, insights {mine.get(account)}"
        )
    active = {
        r["user_id"]
        for r in await _rows(
            server_url,
            INSIGHTS,
            "SELECT DISTINCT user_id FROM active_days WHERE user_id = ANY($1::text[])",
            cycle_users,
        )
    }
    if set(cycle_users) - active:
        missing = sorted(set(cycle_users) - active)
        problems.append(f"insights: {len(missing)} users never active, e.g. {missing[:3]}")
    exchange = {
        r["id"]: r["status"]
        for r in await _rows(
            server_url,
            "jifen_exchange",
            "SELECT id, status FROM redemptions WHERE id = ANY($1::text[])",
            redemption_ids,
        )
    }
    known = {
        r["redemption_id"]: r["cancelled"]
        for r in await _rows(
            server_url,
            INSIGHTS,
            "SELECT redemption_id, cancelled FROM redemptions "
            "WHERE redemption_id = ANY($1::text[])",
            redemption_ids,
        )
    }
    for redemption_id, status in exchange.items():
        completed_once = status in ("completed", "shipped", "delivered", "cancelled")
        if completed_once and redemption_id not in known:
            problems.append(f"insights: completed redemption {redemption_id} not recorded")
        elif status == "cancelled" and redemption_id in known and not known[redemption_id]:
            problems.append(f"insights: cancelled redemption {redemption_id} not marked")
        elif not completed_once and redemption_id in known:
            problems.append(f"insights: redemption {redemption_id} ({status}) recorded")
    return problems


async def check(
    server_url: str,
    users: list[str],
    redemption_ids: list[str],
    tz: str = "Asia/Shanghai",
    within_s: float = 60,
) -> list[str]:
    """The problems found (empty when every invariant holds). The pipeline has drained when
    this is called; a difference is re-checked for a while in case insights is still
    applying the last batch of a restarted consumer."""
    deadline = time.monotonic() + within_s
    while True:
        problems = await _problems(server_url, users, redemption_ids, tz)
        if not problems or time.monotonic() > deadline:
            return problems
        await asyncio.sleep(2)
