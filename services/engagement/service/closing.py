"""Closing ended periods (frozen standings, prize grants, leaderboard.closed) and taking the
daily rank snapshots."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import domain
from services.engagement import repository as repo
from services.engagement.domain import Placed, Prize, Standing, aware
from services.engagement.metrics import PERIODS_CLOSED, PRIZES
from services.engagement.models import messaging
from services.engagement.settings import Settings
from shared.events import (
    ENGAGEMENT_EVENTS,
    REWARDS_GRANTS,
    EngagementEvent,
    GrantCommand,
    stable_id,
)
from shared.messaging import OutgoingEvent, add_to_outbox


@dataclass
class _Awards:
    """What closing a period writes: its standings, its winners and their prize grants."""

    results: list[dict[str, Any]] = field(default_factory=list)
    winners: list[dict[str, Any]] = field(default_factory=list)
    grants: list[OutgoingEvent] = field(default_factory=list)


async def close_one(
    session: AsyncSession, settings: Settings, now: datetime
) -> tuple[str, str] | None:
    """Close the next period whose end and grace have passed: freeze its standings, queue its
    prize grants and leaderboard.closed, all in this one transaction (a crash before the
    commit leaves nothing; after it, the period is closed and is never closed again, and the
    grant ids are derived from (board, period, user), so even a duplicate grant is one at the
    ledger). Returns the (board, period) closed, or None."""
    period = await repo.claim_period_to_close(
        session, now - timedelta(seconds=settings.board_grace_s)
    )
    if period is None:
        return None
    board = await repo.get_board(session, period.board_code)
    if board is None:  # scores of a board that no longer exists: nothing to award
        await repo.mark_closed(session, period.board_code, period.period_key, now)
        return period.board_code, period.period_key
    placed = await _final_standings(session, settings, board, period.period_key, now)
    awards = _awards(board, period.period_key, placed, now)
    closed = _closed_event(board, period, awards, now)
    await repo.insert_results(session, awards.results)
    await add_to_outbox(
        session,
        messaging.outbox,
        [*awards.grants, OutgoingEvent(ENGAGEMENT_EVENTS, board.code, closed.model_dump_json())],
    )
    await repo.mark_closed(session, board.code, period.period_key, now)
    PERIODS_CLOSED.inc()
    return board.code, period.period_key


async def _final_standings(
    session: AsyncSession, settings: Settings, board: Any, period_key: str, now: datetime
) -> list[Placed]:
    """The period's standings as kept (at least down to the last prize), prizes placed."""
    prizes = [Prize(**p) for p in board.prizes]
    keep = max([settings.board_standings_kept, *(p.rank_to for p in prizes)])
    rows = await repo.standings(session, board.code, period_key, keep, now)
    return domain.final_standings(
        [Standing(r.user_id, int(r.score), r.reached_at) for r in rows], prizes
    )


def _awards(board: Any, period_key: str, placed: list[Placed], now: datetime) -> _Awards:
    """The result row of each placed user; for each prize winner, the winner's entry and the
    prize's grant (its id derived from board, period and user)."""
    awards = _Awards()
    for p in placed:
        grant_id = domain.prize_grant_id(board.code, period_key, p.user_id) if p.prize else None
        prize = {"reward_type": p.prize.reward_type, "amount": p.prize.amount} if p.prize else None
        awards.results.append(
            {
                "board_code": board.code,
                "period_key": period_key,
                "position": p.position,
                "rank": p.rank,
                "user_id": p.user_id,
                "score": p.score,
                "prize": prize,
                "grant_id": grant_id,
            }
        )
        if p.prize is None or grant_id is None:
            continue
        awards.winners.append(
            {
                "position": p.position,
                "rank": p.rank,
                "user_id": p.user_id,
                "score": p.score,
                "prize": prize,
                "grant_id": grant_id,
            }
        )
        awards.grants.append(_prize_grant(board, period_key, p, p.prize, grant_id, now))
        PRIZES.labels(p.prize.reward_type).inc()
    return awards


def _prize_grant(
    board: Any, period_key: str, p: Placed, prize: Prize, grant_id: str, now: datetime
) -> OutgoingEvent:
    command = GrantCommand(
        grant_id=grant_id,
        user_id=p.user_id,
        asset=prize.reward_type,
        points=prize.amount,
        task_id=f"leaderboard:{board.code}",
        period_key=period_key,
        completion=p.position,
        causation_event_id=f"leaderboard.closed:{board.code}:{period_key}",
        occurred_at=now,
        reason=f"{board.name} {period_key}: rank {p.rank}",
    )
    return OutgoingEvent(REWARDS_GRANTS, p.user_id, command.model_dump_json())


def _closed_event(board: Any, period: Any, awards: _Awards, now: datetime) -> EngagementEvent:
    return EngagementEvent(
        type="leaderboard.closed",
        event_id=stable_id("leaderboard.closed", board.code, period.period_key),
        data={
            "board": board.code,
            "name": board.name,
            "window": board.window,
            "period": period.period_key,
            "starts_at": period.starts_at.isoformat() if period.starts_at else None,
            "ends_at": period.ends_at.isoformat() if period.ends_at else None,
            "standings": len(awards.results),
            "winners": awards.winners,
        },
        occurred_at=now,
    )


async def snapshot_one(session: AsyncSession, settings: Settings, now: datetime) -> int:
    """Take yesterday's rank snapshot of one board that has none yet (once its day and the
    grace are over); returns how many users it holds, or -1 when none was due."""
    tz = settings.tz
    ready = now - timedelta(seconds=settings.board_grace_s)
    day = domain.local_day(ready, tz) - timedelta(days=1)
    day_end = datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(days=1)
    for board in await repo.list_boards(session, active_only=True):
        if aware(board.created_at) >= day_end:
            continue
        if not await repo.claim_snapshot_day(session, board.code, day):
            continue
        period = domain.period_key(board.window, day_end - timedelta(seconds=1), tz)
        return await repo.take_snapshot(session, board.code, period, day, now)
    return -1
