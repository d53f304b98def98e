"""Closing periods (claim, standings, frozen results, closed ranks) and the daily rank
snapshots."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Row, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.models import (
    board_periods,
    board_results,
    rank_snapshots,
    snapshot_days,
)
from shared.db import inline

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
    # An INSERT answers with a cursor result (its row count); `execute` of a text clause is
    # typed as the general Result.
    result = cast(
        CursorResult[Any],
        await session.execute(
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
        ),
    )
    count = int(result.rowcount or 0)
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
