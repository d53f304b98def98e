"""Leaderboard reads and index upkeep: what the API asks of the boards.

Open periods are served from the Redis-protocol index (PostgreSQL is not touched on that
path: boards are cached for a few seconds); closed periods from their frozen standings in
PostgreSQL. A rebuild reads the scores back from PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.exceptions import RedisError

from services.engagement import domain, service
from services.engagement import repository as repo
from services.engagement.index import BoardIndex
from services.engagement.metrics import INDEX_REBUILDS
from services.engagement.settings import Settings
from services.engagement.workers import IndexWriter
from shared.db import Database
from shared.errors import DomainError

BOARD_CACHE_S = 5.0


def unavailable(exc: Exception) -> DomainError:
    return DomainError(
        "leaderboard_unavailable",
        f"the leaderboard index is unavailable right now ({type(exc).__name__}); try again",
        status=503,
    )


class Leaderboards:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.index = BoardIndex(settings.redis_url, settings.redis_timeout_s)
        self.writer = IndexWriter(
            self.index,
            self._pages,
            self._open_periods,
            self._recent,
            settings.index_check_interval_s,
            settings.retry_backoff_max_s,
        )
        self._boards: dict[str, tuple[float, Any]] = {}

    async def close(self) -> None:
        await self.writer.drain()
        await self.index.close()

    def _pages(self, board: str, period: str) -> AsyncIterator[list[tuple[str, int]]]:
        return service.score_pages(self.db, board, period, self.settings.index_write_batch)

    async def _open_periods(self) -> list[tuple[str, str]]:
        async with self.db.read_only() as session:
            return await repo.open_period_keys(session)

    async def _recent(self) -> list[tuple[str, str, str, int]]:
        since = datetime.now(UTC) - timedelta(seconds=self.settings.index_catch_up_s)
        async with self.db.read_only() as session:
            return await repo.recent_scores(session, since, datetime.now(UTC))

    async def board(self, code: str) -> Any:
        cached = self._boards.get(code)
        if cached is not None and time.monotonic() - cached[0] < BOARD_CACHE_S:
            return cached[1]
        async with self.db.read_only() as session:
            row = await service.get_board(session, code)
        self._boards[code] = (time.monotonic(), row)
        return row

    async def _period(self, board: Any, period: str, now: datetime) -> tuple[str, bool]:
        """(period key, closed?) of a request's `period`."""
        key = service.resolve_period(board, period, now, self.settings.tz)
        if period == "current":
            return key, False  # the running period is never closed yet
        async with self.db.read_only() as session:
            status = await repo.period_status(session, board.code, key)
        return key, status == "closed"

    async def top(self, code: str, period: str, limit: int) -> dict[str, Any]:
        board = await self.board(code)
        key, closed = await self._period(board, period, datetime.now(UTC))
        if closed:
            async with self.db.read_only() as session:
                rows = await repo.results(session, code, key, limit)
            items = [{"rank": r.rank, "user_id": r.user_id, "score": r.score} for r in rows]
            total = len(rows)
        else:
            try:
                ranked, total = await self.index.top(code, key, limit)
            except (RedisError, OSError) as exc:
                raise unavailable(exc) from exc
            items = [{"rank": r.rank, "user_id": r.user_id, "score": r.score} for r in ranked]
        return {"board": code, "period": key, "closed": closed, "total": total, "items": items}

    async def user(self, code: str, user_id: str, period: str, k: int) -> dict[str, Any]:
        board = await self.board(code)
        key, closed = await self._period(board, period, datetime.now(UTC))
        if closed:
            found = await self._closed_user(code, key, user_id)
        else:
            try:
                standing = await self.index.user(code, key, user_id, k)
            except (RedisError, OSError) as exc:
                raise unavailable(exc) from exc
            found = None
            if standing is not None:
                found = {
                    "score": standing.score,
                    "rank": standing.rank,
                    "total": standing.total,
                    "around": [
                        {"rank": r.rank, "user_id": r.user_id, "score": r.score}
                        for r in standing.around
                    ],
                }
        if found is None:
            raise DomainError(
                "not_ranked", f"user {user_id} is not ranked on {code} for {key}", status=404
            )
        pct = domain.percentile(found["rank"], found["total"])
        return {
            "board": code,
            "period": key,
            "user_id": user_id,
            **found,
            "percentile": pct,
            "percentile_label": f"前{pct}%",
        }

    async def _closed_user(self, code: str, key: str, user_id: str) -> dict[str, Any] | None:
        async with self.db.read_only() as session:
            at = await repo.closed_at(session, code, key)
            found = await repo.closed_rank(session, code, key, user_id, at or datetime.now(UTC))
        if found is None:
            return None
        score, rank, total = found
        return {"score": score, "rank": rank, "total": total, "around": []}

    async def history(self, code: str, user_id: str, days: int) -> dict[str, Any]:
        """The user's rank at the end of each of the last `days` business days, today's live."""
        board = await self.board(code)
        now = datetime.now(UTC)
        tz = self.settings.tz
        today = domain.local_day(now, tz)
        async with self.db.read_only() as session:
            rows = await repo.snapshots(session, code, user_id, today - timedelta(days=days - 1))
        points = [
            {
                "day": r.day.isoformat(),
                "period": r.period_key,
                "rank": r.rank,
                "score": r.score,
                "live": False,
            }
            for r in rows
            if r.day < today
        ]
        key = domain.period_key(board.window, now, tz)
        try:
            standing = await self.index.user(code, key, user_id, 0)
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc
        if standing is not None:
            points.append(
                {
                    "day": today.isoformat(),
                    "period": key,
                    "rank": standing.rank,
                    "score": standing.score,
                    "live": True,
                }
            )
        return {"board": code, "user_id": user_id, "days": points}

    async def rebuild(self, code: str, period: str) -> dict[str, Any]:
        board = await self.board(code)
        key, closed = await self._period(board, period, datetime.now(UTC))
        if closed:
            raise DomainError(
                "period_closed", f"{code} {key} is closed: it is served from its standings"
            )
        try:
            members = await self.writer.rebuild(code, key)
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc
        INDEX_REBUILDS.labels("requested").inc()
        return {"board": code, "period": key, "members": members}

    def forget(self, code: str) -> None:
        self._boards.pop(code, None)
