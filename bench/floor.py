"""The floor: the ledger's credit work as raw batched SQL, straight into PostgreSQL.

Per event: a lot (whose key is the grant consumer's inbox), a journal entry, a message in the
batch's outbox row and the account's new balance - the same rows with the same indexes and constraints the ledger
writes - in transactions of `batch` events, with set-based statements (unnest). Nothing a
service could do is cheaper. (Before issue 30 it also wrote an inbox row per event, as the
ledger did then, and an outbox row per event.)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import asyncpg

from shared.db import asyncpg_kwargs, database_url, ensure_database
from shared.migrate import upgrade


async def measure_floor(server_url: str, user_ids: list[str], batch: int = 500) -> float:
    """Returns credited events per second."""
    name = f"jifen_bench_floor_{uuid.uuid4().hex[:8]}"
    await ensure_database(server_url, name)
    url = database_url(server_url, name)
    await asyncio.to_thread(upgrade, "services.rewards_ledger", url.render_as_string(False))
    conn = await asyncpg.connect(**asyncpg_kwargs(url))  # type: ignore[arg-type]
    try:
        start = time.perf_counter()
        for i in range(0, len(user_ids), batch):
            chunk = user_ids[i : i + batch]
            keys = [f"grant:{uuid.uuid4()}" for _ in chunk]
            lots = [str(uuid.uuid4()) for _ in chunk]
            totals = Counter(chunk)
            async with conn.transaction():
                rows = await conn.fetch(
                    """INSERT INTO accounts (user_id, balance)
                       SELECT u, n FROM unnest($1::text[], $2::bigint[]) AS t(u, n)
                       ON CONFLICT (user_id, asset) DO UPDATE
                       SET balance = accounts.balance + excluded.balance, updated_at = now()
                       RETURNING user_id, balance""",
                    list(totals),
                    list(totals.values()),
                )
                after = {r["user_id"]: r["balance"] for r in rows}
                # balance_after per entry: the running balance within this batch
                running: dict[str, int] = {u: after[u] - totals[u] for u in totals}
                balances = []
                for u in chunk:
                    running[u] += 1
                    balances.append(running[u])
                await conn.execute(
                    """INSERT INTO lots (id, user_id, origin, origin_ref, points, remaining, expires_at)
                       SELECT l, u, 'grant', k, 1, 1, now() + interval '365 days'
                       FROM unnest($1::text[], $2::text[], $3::text[]) AS t(l, u, k)""",
                    lots,
                    chunk,
                    keys,
                )
                await conn.execute(
                    """INSERT INTO journal_entries
                           (user_id, kind, amount, balance_after, idempotency_key, lot_id)
                       SELECT u, 'credit', 1, b, k, l
                       FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[])
                            AS t(u, b, k, l)""",
                    chunk,
                    balances,
                    keys,
                    lots,
                )
                await conn.execute(
                    """INSERT INTO outbox (topics, keys, payloads)
                       SELECT array_agg(CAST('ledger.events' AS text)), array_agg(u ORDER BY n),
                              array_agg(json_build_object('type', 'credited', 'user_id', u,
                                                          'points', 1, 'balance_after', b,
                                                          'idempotency_key', k)::text
                                        ORDER BY n)
                       FROM unnest($1::text[], $2::bigint[], $3::text[])
                            WITH ORDINALITY AS t(u, b, k, n)""",
                    chunk,
                    balances,
                    keys,
                )
        elapsed = time.perf_counter() - start
    finally:
        await conn.close()
    return len(user_ids) / elapsed
