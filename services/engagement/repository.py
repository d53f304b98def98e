"""Every SQL statement of the engagement service (set-based per batch; see shared/bulk.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.models import (
    badges,
    board_periods,
    board_results,
    board_scores,
    boards,
    flagged_users,
    rank_snapshots,
    snapshot_days,
    tiers,
    user_badges,
    user_tiers,
)
from shared.bulk import Bulk
from shared.db import inline

# -- boards ---------------------------------------------------------------------------------


async def insert_board(session: AsyncSession, values: dict[str, Any]) -> Row[Any] | None:
    stmt = (
        pg_insert(boards)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["code"])
        .returning(*boards.c)
    )
    return (await session.execute(stmt)).first()


async def get_board(session: AsyncSession, code: str) -> Row[Any] | None:
    return (await session.execute(select(boards).where(boards.c.code == code))).first()


async def list_boards(session: AsyncSession, active_only: bool = False) -> list[Row[Any]]:
    query = select(boards).order_by(boards.c.code)
    if active_only:
        query = query.where(boards.c.active)
    return list((await session.execute(query)).all())


# -- scores ---------------------------------------------------------------------------------

PERIODS = Bulk(
    "board_periods",
    {
        "board_code": "text",
        "period_key": "text",
        "starts_at": "timestamptz",
        "ends_at": "timestamptz",
    },
)
OPEN_PERIODS = Bulk("board_periods", {"board_code": "text", "period_key": "text"}, prefix="o_")


async def open_periods(
    session: AsyncSession, periods: Sequence[tuple[str, str, datetime | None, datetime | None]]
) -> set[tuple[str, str]]:
    """Record these periods (board, key, start, end) and return those still open, each held
    with a share lock until the commit so that no close runs under the scores written now."""
    if not periods:
        return set()
    ordered = sorted(set(periods), key=lambda p: (p[0], p[1]))
    rows = [dict(zip(PERIODS.columns, p, strict=True)) for p in ordered]
    await session.execute(
        PERIODS.insert("ON CONFLICT (board_code, period_key) DO NOTHING"), PERIODS.params(rows)
    )
    keys = [{"board_code": p[0], "period_key": p[1]} for p in ordered]
    found = await session.execute(
        text(
            "SELECT p.board_code, p.period_key FROM board_periods p "
            f"JOIN {OPEN_PERIODS.source()} ON (p.board_code, p.period_key) = "
            "(v.board_code, v.period_key) "
            "WHERE p.status = 'open' ORDER BY p.board_code, p.period_key FOR SHARE OF p"
        ),
        OPEN_PERIODS.params(keys),
    )
    return {(r.board_code, r.period_key) for r in found}


SCORES = Bulk(
    "board_scores",
    {
        "board_code": "text",
        "period_key": "text",
        "user_id": "text",
        "delta": "bigint",
        "at": "timestamptz",
    },
)


async def add_scores(
    session: AsyncSession, deltas: Sequence[tuple[str, str, str, int, datetime]]
) -> list[Row[Any]]:
    """Add (board, period, user, delta, at) to the scores, summed per key; returns every
    changed score as it now stands (absolute)."""
    if not deltas:
        return []
    rows = [dict(zip(SCORES.columns, d, strict=True)) for d in deltas]
    result = await session.execute(
        text(
            "INSERT INTO board_scores AS s (board_code, period_key, user_id, score, reached_at) "
            "SELECT v.board_code, v.period_key, v.user_id, sum(v.delta), max(v.at) "
            f"FROM {SCORES.source()} GROUP BY v.board_code, v.period_key, v.user_id "
            "ORDER BY v.board_code, v.period_key, v.user_id "
            "ON CONFLICT (board_code, period_key, user_id) DO UPDATE SET "
            "score = s.score + EXCLUDED.score, "
            "reached_at = GREATEST(s.reached_at, EXCLUDED.reached_at), updated_at = now() "
            "RETURNING board_code, period_key, user_id, score"
        ),
        SCORES.params(rows),
    )
    return list(result.all())


async def flagged(session: AsyncSession, user_ids: Sequence[str], now: datetime) -> set[str]:
    if not user_ids:
        return set()
    rows = await session.execute(
        select(flagged_users.c.user_id).where(
            flagged_users.c.user_id.in_(sorted(set(user_ids))),
            flagged_users.c.flagged_until > now,
        )
    )
    return set(rows.scalars())


async def scores_page(
    session: AsyncSession, board: str, period: str, after_user: str, limit: int, now: datetime
) -> list[Row[Any]]:
    """A page of a period's scores by user id, flagged users left out (for a rebuild)."""
    rows = await session.execute(
        text(
            "SELECT s.user_id, s.score FROM board_scores s WHERE s.board_code = :b "
            "AND s.period_key = :p AND s.user_id > :after AND NOT EXISTS ("
            "SELECT 1 FROM flagged_users f WHERE f.user_id = s.user_id "
            "AND f.flagged_until > :now) ORDER BY s.user_id LIMIT :limit"
        ),
        {"b": board, "p": period, "after": after_user, "limit": limit, "now": now},
    )
    return list(rows.all())


async def recent_scores(
    session: AsyncSession, since: datetime, now: datetime
) -> list[tuple[str, str, str, int]]:
    """Scores of open periods changed since `since` (flagged users left out)."""
    rows = await session.execute(
        text(
            "SELECT s.board_code, s.period_key, s.user_id, s.score FROM board_scores s "
            "JOIN board_periods p ON (p.board_code, p.period_key) = (s.board_code, s.period_key) "
            "WHERE s.updated_at >= :since AND p.status = 'open' AND NOT EXISTS ("
            "SELECT 1 FROM flagged_users f WHERE f.user_id = s.user_id "
            "AND f.flagged_until > :now)"
        ),
        {"since": since, "now": now},
    )
    return [(r.board_code, r.period_key, r.user_id, int(r.score)) for r in rows]


async def score_of(session: AsyncSession, board: str, period: str, user_id: str) -> int | None:
    value = (
        await session.execute(
            select(board_scores.c.score).where(
                board_scores.c.board_code == board,
                board_scores.c.period_key == period,
                board_scores.c.user_id == user_id,
            )
        )
    ).scalar_one_or_none()
    return None if value is None else int(value)


async def open_period_keys(session: AsyncSession) -> list[tuple[str, str]]:
    rows = await session.execute(
        select(board_periods.c.board_code, board_periods.c.period_key)
        .join(boards, boards.c.code == board_periods.c.board_code)
        .where(board_periods.c.status == inline("open"))
        .order_by(board_periods.c.board_code, board_periods.c.period_key)
    )
    return [(r.board_code, r.period_key) for r in rows]


async def period_status(session: AsyncSession, board: str, period: str) -> str | None:
    return (
        await session.execute(
            select(board_periods.c.status).where(
                board_periods.c.board_code == board, board_periods.c.period_key == period
            )
        )
    ).scalar_one_or_none()


async def open_periods_of_users(
    session: AsyncSession, user_ids: Sequence[str]
) -> list[tuple[str, str, str]]:
    """(board, period, user) of every open period these users have a score in."""
    rows = await session.execute(
        select(board_scores.c.board_code, board_scores.c.period_key, board_scores.c.user_id)
        .join(
            board_periods,
            (board_periods.c.board_code == board_scores.c.board_code)
            & (board_periods.c.period_key == board_scores.c.period_key),
        )
        .where(
            board_scores.c.user_id.in_(sorted(set(user_ids))),
            board_periods.c.status == inline("open"),
        )
    )
    return [(r.board_code, r.period_key, r.user_id) for r in rows]


# -- closing --------------------------------------------------------------------------------


async def claim_period_to_close(session: AsyncSession, ended_before: datetime) -> Row[Any] | None:
    """One open period that ended before `ended_before`, locked (other closers skip it)."""
    return (
        await session.execute(
            select(board_periods)
            .where(
                board_periods.c.status == inline("open"),
                board_periods.c.ends_at <= ended_before,
            )
            .order_by(board_periods.c.ends_at, board_periods.c.board_code)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
    ).first()


async def standings(
    session: AsyncSession, board: str, period: str, limit: int, now: datetime
) -> list[Row[Any]]:
    """The best `limit` positive scores of a period (flagged users left out), in prize
    order: score, then who reached it first, then user id."""
    rows = await session.execute(
        text(
            "SELECT s.user_id, s.score, s.reached_at FROM board_scores s "
            "WHERE s.board_code = :b AND s.period_key = :p AND s.score > 0 AND NOT EXISTS ("
            "SELECT 1 FROM flagged_users f WHERE f.user_id = s.user_id "
            "AND f.flagged_until > :now) "
            "ORDER BY s.score DESC, s.reached_at, s.user_id LIMIT :limit"
        ),
        {"b": board, "p": period, "now": now, "limit": limit},
    )
    return list(rows.all())


async def insert_results(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(board_results), rows)


async def mark_closed(session: AsyncSession, board: str, period: str, now: datetime) -> None:
    await session.execute(
        update(board_periods)
        .where(board_periods.c.board_code == board, board_periods.c.period_key == period)
        .values(status="closed", closed_at=now)
    )


async def results(session: AsyncSession, board: str, period: str, limit: int) -> list[Row[Any]]:
    rows = await session.execute(
        select(board_results)
        .where(board_results.c.board_code == board, board_results.c.period_key == period)
        .order_by(board_results.c.position)
        .limit(limit)
    )
    return list(rows.all())


async def closed_rank(
    session: AsyncSession, board: str, period: str, user_id: str, closed_at: datetime
) -> tuple[int, int, int] | None:
    """(score, rank, total ranked) of a user in a closed period, from its scores."""
    row = (
        await session.execute(
            text(
                "WITH ranked AS (SELECT s.user_id, s.score FROM board_scores s "
                "WHERE s.board_code = :b AND s.period_key = :p AND s.score > 0 AND NOT EXISTS ("
                "SELECT 1 FROM flagged_users f WHERE f.user_id = s.user_id "
                "AND f.flagged_until > :at)) "
                "SELECT me.score, (SELECT count(*) FROM ranked r WHERE r.score > me.score) + 1 "
                "AS rank, (SELECT count(*) FROM ranked) AS total FROM ranked me "
                "WHERE me.user_id = :u"
            ),
            {"b": board, "p": period, "u": user_id, "at": closed_at},
        )
    ).first()
    return None if row is None else (int(row.score), int(row.rank), int(row.total))


async def closed_at(session: AsyncSession, board: str, period: str) -> datetime | None:
    return (
        await session.execute(
            select(board_periods.c.closed_at).where(
                board_periods.c.board_code == board, board_periods.c.period_key == period
            )
        )
    ).scalar_one_or_none()


# -- daily snapshots ------------------------------------------------------------------------


async def claim_snapshot_day(session: AsyncSession, board: str, day: date) -> bool:
    """Mark (board, day) as snapshotted; False when another worker already did."""
    result = await session.execute(
        pg_insert(snapshot_days)
        .values(board_code=board, day=day, users=0)
        .on_conflict_do_nothing()
        .returning(snapshot_days.c.day)
    )
    return result.first() is not None


async def take_snapshot(
    session: AsyncSession, board: str, period: str, day: date, now: datetime
) -> int:
    result = await session.execute(
        text(
            "INSERT INTO rank_snapshots (board_code, day, user_id, period_key, rank, score) "
            "SELECT CAST(:b AS text), CAST(:d AS date), s.user_id, CAST(:p AS text), "
            "rank() OVER (ORDER BY s.score DESC), s.score "
            "FROM board_scores s WHERE s.board_code = CAST(:b AS text) "
            "AND s.period_key = CAST(:p AS text) "
            "AND s.score > 0 AND NOT EXISTS (SELECT 1 FROM flagged_users f "
            "WHERE f.user_id = s.user_id AND f.flagged_until > :now)"
        ),
        {"b": board, "p": period, "d": day, "now": now},
    )
    count = int(result.rowcount or 0)  # type: ignore[attr-defined]
    await session.execute(
        update(snapshot_days)
        .where(snapshot_days.c.board_code == board, snapshot_days.c.day == day)
        .values(users=count)
    )
    return count


async def snapshots(session: AsyncSession, board: str, user_id: str, since: date) -> list[Row[Any]]:
    rows = await session.execute(
        select(rank_snapshots)
        .where(
            rank_snapshots.c.board_code == board,
            rank_snapshots.c.user_id == user_id,
            rank_snapshots.c.day >= since,
        )
        .order_by(rank_snapshots.c.day)
    )
    return list(rows.all())


async def purge_snapshots(session: AsyncSession, before: date) -> None:
    await session.execute(delete(rank_snapshots).where(rank_snapshots.c.day < before))
    await session.execute(delete(snapshot_days).where(snapshot_days.c.day < before))


# -- flags ----------------------------------------------------------------------------------

FLAGS = Bulk(
    "flagged_users",
    {"user_id": "text", "flagged_until": "timestamptz", "diversions": "int", "last_reason": "text"},
)


async def flag_users(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(
            FLAGS.insert(
                "ON CONFLICT (user_id) DO UPDATE SET "
                "flagged_until = GREATEST(flagged_users.flagged_until, EXCLUDED.flagged_until), "
                "diversions = flagged_users.diversions + EXCLUDED.diversions, "
                "last_reason = EXCLUDED.last_reason, updated_at = now()"
            ),
            FLAGS.params(sorted(rows, key=lambda r: r["user_id"])),
        )


async def flag_of(session: AsyncSession, user_id: str) -> Row[Any] | None:
    return (
        await session.execute(select(flagged_users).where(flagged_users.c.user_id == user_id))
    ).first()


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


# -- badges ---------------------------------------------------------------------------------


async def insert_badge(session: AsyncSession, values: dict[str, Any]) -> Row[Any] | None:
    stmt = (
        pg_insert(badges)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["code"])
        .returning(*badges.c)
    )
    return (await session.execute(stmt)).first()


async def list_badges(session: AsyncSession, active_only: bool = False) -> list[Row[Any]]:
    query = select(badges).order_by(badges.c.code)
    if active_only:
        query = query.where(badges.c.active)
    return list((await session.execute(query)).all())


async def award_badges(session: AsyncSession, rows: list[dict[str, Any]]) -> list[Row[Any]]:
    """Insert awards; returns those that are new (an award already made is left alone)."""
    if not rows:
        return []
    rows = sorted(rows, key=lambda r: (r["user_id"], r["badge_code"]))
    result = await session.execute(
        pg_insert(user_badges)
        .values(rows)
        .on_conflict_do_nothing()
        .returning(user_badges.c.user_id, user_badges.c.badge_code, user_badges.c.awarded_at)
    )
    return list(result.all())


async def awarded(session: AsyncSession, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """user -> {badge code: awarded_at}."""
    if not user_ids:
        return {}
    rows = await session.execute(
        select(user_badges).where(user_badges.c.user_id.in_(sorted(set(user_ids))))
    )
    found: dict[str, dict[str, Any]] = {}
    for r in rows:
        found.setdefault(r.user_id, {})[r.badge_code] = r.awarded_at
    return found


# -- tiers ----------------------------------------------------------------------------------


async def ladder_rows(session: AsyncSession) -> list[Row[Any]]:
    return list((await session.execute(select(tiers).order_by(tiers.c.min_growth))).all())


async def replace_ladder(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Replace the ladder; returns its new version."""
    await session.execute(text("LOCK TABLE tiers IN EXCLUSIVE MODE"))
    version = int(
        (await session.execute(select(func.coalesce(func.max(tiers.c.version), 0)))).scalar_one()
    )
    await session.execute(delete(tiers))
    if rows:
        await session.execute(insert(tiers), [{**r, "version": version + 1} for r in rows])
    return version + 1


async def lock_user_tiers(session: AsyncSession, user_ids: Sequence[str]) -> dict[str, Row[Any]]:
    if not user_ids:
        return {}
    rows = await session.execute(
        select(user_tiers)
        .where(user_tiers.c.user_id.in_(sorted(set(user_ids))))
        .order_by(user_tiers.c.user_id)
        .with_for_update()
    )
    return {r.user_id: r for r in rows}


async def user_tier(session: AsyncSession, user_id: str) -> Row[Any] | None:
    return (
        await session.execute(select(user_tiers).where(user_tiers.c.user_id == user_id))
    ).first()


async def save_user_tier(session: AsyncSession, values: dict[str, Any]) -> None:
    stmt = pg_insert(user_tiers).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["user_id"],
        set_={k: stmt.excluded[k] for k in values if k != "user_id"} | {"updated_at": func.now()},
    )
    await session.execute(stmt)


async def claim_due_tiers(
    session: AsyncSession, due_before: datetime, limit: int
) -> list[Row[Any]]:
    rows = await session.execute(
        select(user_tiers)
        .where(user_tiers.c.evaluate_at <= due_before)
        .order_by(user_tiers.c.evaluate_at, user_tiers.c.user_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows.all())
