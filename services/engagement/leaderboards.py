"""Leaderboard reads and index upkeep: what the API asks of the boards.

Open periods are served from the Redis-protocol index (boards are cached for a few seconds);
closed periods from their frozen standings in PostgreSQL. A rebuild reads the scores back
from PostgreSQL. Entries show users by display name as the board says (names.py), never by
id to the public: the names of a page come from one query, for users not seen in the last
`profile_cache_s` (and when PostgreSQL is down, the board still answers from the index,
with the names last seen or pseudonyms).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from services.engagement import domain, service
from services.engagement import repository as repo
from services.engagement.index import BoardIndex, Ranked, UserRank
from services.engagement.metrics import INDEX_REBUILDS
from services.engagement.names import Viewer, person
from services.engagement.settings import Settings
from services.engagement.workers import IndexWriter
from shared.db import Database
from shared.errors import DomainError

BOARD_CACHE_S = 5.0
log = logging.getLogger(__name__)


def unavailable(exc: Exception) -> DomainError:
    return DomainError(
        "leaderboard_unavailable",
        f"the leaderboard index is unavailable right now ({type(exc).__name__}); try again",
        status=503,
    )


ReadProfiles = Callable[[list[str]], Awaitable[dict[str, repo.Profile]]]


class NameCache:
    """Profiles by user id, each kept `ttl_s` (absent ones too: most users never set a
    name), at most `size` of them; the missing ones of a page are read in one query."""

    def __init__(self, read: ReadProfiles, ttl_s: float, size: int) -> None:
        self.read, self.ttl_s, self.size = read, ttl_s, size
        self._seen: dict[str, tuple[float, repo.Profile | None]] = {}

    async def profiles(self, user_ids: Iterable[str]) -> dict[str, repo.Profile]:
        now = time.monotonic()
        found: dict[str, repo.Profile] = {}
        missing: list[str] = []
        for user_id in dict.fromkeys(user_ids):
            seen = self._seen.get(user_id)
            if seen is None or now - seen[0] >= self.ttl_s:
                missing.append(user_id)
            elif seen[1] is not None:
                found[user_id] = seen[1]
        if not missing:
            return found
        try:
            fetched = await self.read(missing)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("display names unavailable, showing those last seen: %s", exc)
            stale = (self._seen.get(u, (0.0, None))[1] for u in missing)
            found.update((u, p) for u, p in zip(missing, stale, strict=True) if p is not None)
            return found
        for user_id in missing:
            self._seen.pop(user_id, None)  # re-inserted last: the oldest go first when full
            self._seen[user_id] = (now, fetched.get(user_id))
        found.update(fetched)
        for user_id in list(itertools.islice(self._seen, max(0, len(self._seen) - self.size))):
            del self._seen[user_id]
        return found

    def forget(self, user_ids: Iterable[str]) -> None:
        """Read these users' profiles afresh next time (after a change committed here)."""
        for user_id in user_ids:
            self._seen.pop(user_id, None)


class Leaderboards:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        # The names of a page: one statement on its own, in autocommit (no BEGIN / COMMIT
        # round trips), the open periods' only PostgreSQL work, for names not cached.
        self._autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.names = NameCache(
            self._read_profiles, settings.profile_cache_s, settings.profile_cache_size
        )
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

    async def _read_profiles(self, user_ids: list[str]) -> dict[str, repo.Profile]:
        async with self._autocommit.connect() as conn:
            return await repo.profiles_of(conn, user_ids)

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

    async def _people(
        self, board: Any, user_ids: Sequence[str], viewer: Viewer
    ) -> dict[str, dict[str, Any]]:
        """How each of these users shows to this viewer: one lookup for the page, none on a
        board that shows no names."""
        display = board.name_display
        profiles = {} if display == "hidden" else await self.names.profiles(user_ids)
        shown = {}
        for user_id in user_ids:
            p = profiles.get(user_id)
            name, avatar = (p.display_name, p.avatar_url) if p else (None, None)
            shown[user_id] = person(display, user_id, name, avatar, viewer)
        return shown

    async def _entries(
        self, board: Any, ranked: Sequence[Ranked], viewer: Viewer
    ) -> list[dict[str, Any]]:
        people = await self._people(board, [r.user_id for r in ranked], viewer)
        return [{"rank": r.rank, **people[r.user_id], "score": r.score} for r in ranked]

    async def top(self, code: str, period: str, limit: int, viewer: Viewer) -> dict[str, Any]:
        board = await self.board(code)
        key, closed = await self._period(board, period, datetime.now(UTC))
        if closed:
            async with self.db.read_only() as session:
                rows = await repo.results(session, code, key, limit)
            ranked = [Ranked(r.rank, r.user_id, r.score) for r in rows]
            total = len(rows)
        else:
            try:
                ranked, total = await self.index.top(code, key, limit)
            except (RedisError, OSError) as exc:
                raise unavailable(exc) from exc
        items = await self._entries(board, ranked, viewer)
        return {"board": code, "period": key, "closed": closed, "total": total, "items": items}

    async def user(
        self, code: str, user_id: str, period: str, k: int, viewer: Viewer
    ) -> dict[str, Any]:
        board = await self.board(code)
        key, closed = await self._period(board, period, datetime.now(UTC))
        if closed:
            found = await self._closed_user(code, key, user_id)
        else:
            try:
                found = await self.index.user(code, key, user_id, k)
            except (RedisError, OSError) as exc:
                raise unavailable(exc) from exc
        if found is None:
            raise DomainError(
                "not_ranked", f"the user is not ranked on {code} for {key}", status=404
            )
        people = await self._people(board, [user_id, *(r.user_id for r in found.around)], viewer)
        pct = domain.percentile(found.rank, found.total)
        return {
            "board": code,
            "period": key,
            **people[user_id],
            **self._whose(user_id, viewer),
            "score": found.score,
            "rank": found.rank,
            "total": found.total,
            "around": [
                {"rank": r.rank, **people[r.user_id], "score": r.score} for r in found.around
            ],
            "percentile": pct,
            "percentile_label": f"前{pct}%",
        }

    @staticmethod
    def _whose(user_id: str, viewer: Viewer) -> dict[str, str]:
        """The id asked about, echoed to operators and to the user themselves only."""
        return {"user_id": user_id} if viewer.ids or viewer.user_id == user_id else {}

    async def _closed_user(self, code: str, key: str, user_id: str) -> UserRank | None:
        async with self.db.read_only() as session:
            at = await repo.closed_at(session, code, key)
            found = await repo.closed_rank(session, code, key, user_id, at or datetime.now(UTC))
        if found is None:
            return None
        score, rank, total = found
        return UserRank(user_id, score, rank, total, [])

    async def history(self, code: str, user_id: str, days: int, viewer: Viewer) -> dict[str, Any]:
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
        return {"board": code, **self._whose(user_id, viewer), "days": points}

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
