"""Per-user counters: actions and earnings per day, named counters (best streak, redemptions)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bulk import Bulk

# -- counters -------------------------------------------------------------------------------

ACTIONS = Bulk(
    "action_daily", {"user_id": "text", "action": "text", "day": "date", "hits": "bigint"}
)
EARNED = Bulk(
    "earned_daily", {"user_id": "text", "asset": "text", "day": "date", "amount": "bigint"}
)
COUNTERS = Bulk("user_counters", {"user_id": "text", "name": "text", "value": "bigint"})


async def count_actions(session: AsyncSession, rows: list[tuple[str, str, date, int]]) -> None:
    if rows:
        await session.execute(
            text(
                "INSERT INTO action_daily AS a (user_id, action, day, count) "
                "SELECT v.user_id, v.action, v.day, sum(v.hits) "
                f"FROM {ACTIONS.source()} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
                "ON CONFLICT (user_id, action, day) DO UPDATE SET count = a.count + EXCLUDED.count"
            ),
            ACTIONS.params([dict(zip(ACTIONS.columns, r, strict=True)) for r in rows]),
        )


async def add_earned(session: AsyncSession, rows: list[tuple[str, str, date, int]]) -> None:
    if rows:
        await session.execute(
            text(
                "INSERT INTO earned_daily AS e (user_id, asset, day, amount) "
                "SELECT v.user_id, v.asset, v.day, sum(v.amount) "
                f"FROM {EARNED.source()} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
                "ON CONFLICT (user_id, asset, day) DO UPDATE SET amount = e.amount + EXCLUDED.amount"
            ),
            EARNED.params([dict(zip(EARNED.columns, r, strict=True)) for r in rows]),
        )


async def add_counters(session: AsyncSession, rows: list[tuple[str, str, int]]) -> None:
    """Add to named counters (summed per key)."""
    if rows:
        await session.execute(
            text(
                "INSERT INTO user_counters AS c (user_id, name, value) "
                f"SELECT v.user_id, v.name, sum(v.value) FROM {COUNTERS.source()} "
                "GROUP BY 1, 2 ORDER BY 1, 2 "
                "ON CONFLICT (user_id, name) DO UPDATE SET value = c.value + EXCLUDED.value"
            ),
            COUNTERS.params([dict(zip(COUNTERS.columns, r, strict=True)) for r in rows]),
        )


async def raise_counters(session: AsyncSession, rows: list[tuple[str, str, int]]) -> None:
    """Set named counters to the highest value seen (best streak)."""
    if rows:
        await session.execute(
            text(
                "INSERT INTO user_counters AS c (user_id, name, value) "
                f"SELECT v.user_id, v.name, max(v.value) FROM {COUNTERS.source()} "
                "GROUP BY 1, 2 ORDER BY 1, 2 "
                "ON CONFLICT (user_id, name) DO UPDATE SET value = GREATEST(c.value, EXCLUDED.value)"
            ),
            COUNTERS.params([dict(zip(COUNTERS.columns, r, strict=True)) for r in rows]),
        )


async def action_totals(
    session: AsyncSession, user_ids: Sequence[str], actions: Sequence[str]
) -> dict[tuple[str, str], int]:
    if not user_ids or not actions:
        return {}
    rows = await session.execute(
        text(
            "SELECT user_id, action, sum(count) AS n FROM action_daily "
            "WHERE user_id = ANY(:u) AND action = ANY(:a) GROUP BY 1, 2"
        ),
        {"u": sorted(set(user_ids)), "a": sorted(set(actions))},
    )
    return {(r.user_id, r.action): int(r.n) for r in rows}


async def action_recent(
    session: AsyncSession, user_ids: Sequence[str], action: str, since: date
) -> dict[str, int]:
    rows = await session.execute(
        text(
            "SELECT user_id, sum(count) AS n FROM action_daily "
            "WHERE user_id = ANY(:u) AND action = :a AND day >= :since GROUP BY 1"
        ),
        {"u": sorted(set(user_ids)), "a": action, "since": since},
    )
    return {r.user_id: int(r.n) for r in rows}


async def earned_totals(
    session: AsyncSession, user_ids: Sequence[str], since: date | None = None
) -> dict[tuple[str, str], int]:
    """(user, asset) -> earned, in all (or since `since`, inclusive)."""
    if not user_ids:
        return {}
    rows = await session.execute(
        text(
            "SELECT user_id, asset, sum(amount) AS n FROM earned_daily WHERE user_id = ANY(:u) "
            "AND (CAST(:since AS date) IS NULL OR day >= CAST(:since AS date)) GROUP BY 1, 2"
        ),
        {"u": sorted(set(user_ids)), "since": since},
    )
    return {(r.user_id, r.asset): int(r.n) for r in rows}


async def earned_by_day(
    session: AsyncSession, user_id: str, asset: str, since: date
) -> list[tuple[date, int]]:
    rows = await session.execute(
        text(
            "SELECT day, amount FROM earned_daily WHERE user_id = :u AND asset = :a "
            "AND day >= :since ORDER BY day"
        ),
        {"u": user_id, "a": asset, "since": since},
    )
    return [(r.day, int(r.amount)) for r in rows]


async def counters(session: AsyncSession, user_ids: Sequence[str]) -> dict[tuple[str, str], int]:
    if not user_ids:
        return {}
    rows = await session.execute(
        text("SELECT user_id, name, value FROM user_counters WHERE user_id = ANY(:u)"),
        {"u": sorted(set(user_ids))},
    )
    return {(r.user_id, r.name): int(r.value) for r in rows}
