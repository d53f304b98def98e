"""Leaderboard definitions: creating, changing and reading boards, resolving a request's period, and
reading a period's scores back for an index rebuild."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import domain
from services.engagement import repository as repo
from shared.db import Database
from shared.errors import DomainError, NotFound


async def create_board(session: AsyncSession, values: dict[str, Any]) -> repo.Board:
    board = await repo.insert_board(session, values)
    if board is None:
        raise DomainError("board_exists", f"a leaderboard {values['code']} already exists")
    return board


async def update_board(session: AsyncSession, code: str, values: dict[str, Any]) -> repo.Board:
    board = await repo.update_board(session, code, values) if values else None
    return board or await get_board(session, code)


async def get_board(session: AsyncSession, code: str) -> repo.Board:
    board = await repo.get_board(session, code)
    if board is None:
        raise NotFound("leaderboard", code)
    return board


def resolve_period(board: repo.Board, period: str, now: datetime, tz: ZoneInfo) -> str:
    """`current` or a period key of the board's window (422 for anything else)."""
    if period == "current":
        return domain.period_key(board.window, now, tz)
    try:
        domain.period_bounds(board.window, period, tz)
    except ValueError as exc:
        raise DomainError("invalid_period", str(exc), status=422) from exc
    return period


async def score_pages(
    db: Database, board: str, period: str, page: int
) -> AsyncIterator[list[tuple[str, int]]]:
    """A period's scores from PostgreSQL, a page at a time (each page its own read)."""
    after = ""
    while True:
        async with db.read_only() as session:
            rows = await repo.scores_page(session, board, period, after, page, datetime.now(UTC))
        if not rows:
            return
        yield [(r.user_id, int(r.score)) for r in rows]
        after = rows[-1].user_id
        if len(rows) < page:
            return
