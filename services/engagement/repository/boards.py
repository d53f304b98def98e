"""Boards, their periods and scores, and the flagged users the boards leave out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.models import (
    board_periods,
    board_scores,
    boards,
    flagged_users,
)
from shared.bulk import Bulk
from shared.db import inline

# -- boards ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Board:
    code: str
    name: str
    metric: str  # points_earned | growth_earned | action_count
    action: str | None  # the action an action_count board counts
    window: str  # day | week | month | all_time
    prizes: list[dict[str, Any]]
    active: bool
    created_at: datetime
    name_display: str = "masked"  # masked | full | hidden: how the public reads show users


def _board(row: Row[Any] | None) -> Board | None:
    return Board(**row._mapping) if row is not None else None


async def insert_board(session: AsyncSession, values: dict[str, Any]) -> Board | None:
    stmt = (
        pg_insert(boards)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["code"])
        .returning(*boards.c)
    )
    return _board((await session.execute(stmt)).first())


async def update_board(session: AsyncSession, code: str, values: dict[str, Any]) -> Board | None:
    """Change what may change on a live board (its name, how it shows users)."""
    stmt = update(boards).where(boards.c.code == code).values(**values).returning(*boards.c)
    return _board((await session.execute(stmt)).first())


async def get_board(session: AsyncSession, code: str) -> Board | None:
    return _board((await session.execute(select(boards).where(boards.c.code == code))).first())


async def list_boards(session: AsyncSession, active_only: bool = False) -> list[Board]:
    query = select(boards).order_by(boards.c.code)
    if active_only:
        query = query.where(boards.c.active)
    return [Board(**r._mapping) for r in await session.execute(query)]


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
