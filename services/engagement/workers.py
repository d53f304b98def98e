"""engagement's background loops: writing committed scores to the leaderboard index (and
rebuilding missing sets), closing ended periods (and the daily rank snapshots), and
re-evaluating tiers whose term is over. The last two are safe in every replica (SKIP LOCKED,
or a claimed row per snapshot day); the index writer is one per process."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.exceptions import RedisError

from services.engagement import service
from services.engagement.index import BoardIndex
from services.engagement.metrics import INDEX_PENDING, INDEX_REBUILDS
from services.engagement.settings import Settings
from shared.db import Database
from shared.retry import Backoff
from shared.worker import PollingWorker

log = logging.getLogger(__name__)


class PeriodCloser(PollingWorker):
    """Closes one ended period per transaction, then takes a due rank snapshot.

    `before_commit` is a seam for crash tests: it runs inside the close's transaction, after
    every row is written and before the commit."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        index: BoardIndex | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(
            poll_s=settings.board_close_interval_s,
            full_batch=1,
            backoff_cap_s=settings.retry_backoff_max_s,
        )
        self.settings = settings
        self.db = db
        self.index = index
        self.before_commit = before_commit

    async def close_once(self, now: datetime | None = None) -> tuple[str, str] | None:
        now = now or datetime.now(UTC)
        async with self.db.transaction() as session:
            closed = await service.close_one(session, self.settings, now)
            if closed is not None and self.before_commit is not None:
                self.before_commit()
        if closed is not None and self.index is not None:
            try:  # served from its standings from now on: the set is no longer needed
                await self.index.drop(*closed)
            except Exception:
                log.warning("could not drop the index of closed period %s", closed)
        return closed

    async def snapshot_once(self, now: datetime | None = None) -> int:
        async with self.db.transaction() as session:
            return await service.snapshot_one(session, self.settings, now or datetime.now(UTC))

    async def step(self) -> int:
        if await self.close_once() is not None:
            return 1  # more may be due: go again at once
        return 1 if await self.snapshot_once() >= 0 else 0


class TierSweeper(PollingWorker):
    """Evaluates tiers whose term (and the downgrade grace) is over."""

    def __init__(self, settings: Settings, db: Database) -> None:
        super().__init__(
            poll_s=settings.tier_sweep_interval_s,
            full_batch=settings.sweep_batch,
            backoff_cap_s=settings.retry_backoff_max_s,
        )
        self.settings = settings
        self.db = db

    async def sweep_once(self, now: datetime | None = None) -> int:
        async with self.db.transaction() as session:
            return await service.evaluate_due_tiers(
                session, self.settings, now or datetime.now(UTC)
            )

    async def step(self) -> int:
        return await self.sweep_once()


# -- the leaderboard index writer ---------------------------------------------------------

PageSource = Callable[[str, str], AsyncIterator[list[tuple[str, int]]]]


@dataclass
class _Rebuild:
    board: str
    period: str
    done: asyncio.Future[int]


class IndexWriter:
    """The worker that writes committed scores to the index and rebuilds missing sets.

    `pages(board, period)` reads a period's scores from PostgreSQL page by page;
    `open_periods()` lists the periods the index should hold; `recent()` the scores changed
    lately, written again when the writer starts: a process killed between a commit and its
    index write left those behind, and their messages, already in the inbox, will not be
    applied (nor written) again.
    """

    def __init__(
        self,
        index: BoardIndex,
        pages: PageSource,
        open_periods: Callable[[], Awaitable[list[tuple[str, str]]]],
        recent: Callable[[], Awaitable[list[tuple[str, str, str, int]]]],
        check_interval_s: float,
        backoff_cap_s: float,
    ) -> None:
        self.index = index
        self.pages = pages
        self.open_periods = open_periods
        self.recent = recent
        self.check_interval_s = check_interval_s
        self.backoff_cap_s = backoff_cap_s
        self.healthy = False
        self.running = False
        self._scores: dict[tuple[str, str], dict[str, int]] = {}
        self._removals: dict[tuple[str, str, str], None] = {}
        self._rebuilds: list[_Rebuild] = []
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._flushed = asyncio.Event()

    # -- called from commit hooks and routes --------------------------------------------------

    def put(self, scores: Iterable[tuple[str, str, str, int]]) -> None:
        """Committed scores (board, period, user, score) to write; the newest per member wins."""
        for board, period, user, score in scores:
            self._scores.setdefault((board, period), {})[user] = score
            self._removals.pop((board, period, user), None)
        self._wake.set()

    def remove(self, members: Iterable[tuple[str, str, str]]) -> None:
        for board, period, user in members:
            self._scores.get((board, period), {}).pop(user, None)
            self._removals[(board, period, user)] = None
        self._wake.set()

    @property
    def pending(self) -> int:
        return sum(len(m) for m in self._scores.values()) + len(self._removals)

    async def rebuild(self, board: str, period: str) -> int:
        """Rebuild one set from PostgreSQL; through the writer's loop when it runs here."""
        if not self.running:
            return await self.index.replace(board, period, self.pages(board, period))
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._rebuilds.append(_Rebuild(board, period, done))
        self._wake.set()
        return await done

    # -- the loop -----------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        self.running = self.healthy = True
        backoff = Backoff(cap=self.backoff_cap_s)
        next_check = 0.0
        caught_up = False
        try:
            while True:
                try:
                    if not caught_up:
                        self._put_behind(await self.recent())
                        caught_up = True
                    if time.monotonic() >= next_check:
                        await self._rebuild_missing()
                        next_check = time.monotonic() + self.check_interval_s
                    await self._run_rebuilds()
                    await self._flush()
                    backoff.reset()
                except (RedisError, OSError) as exc:
                    log.warning("leaderboard index unavailable, retrying: %s", exc)
                    await backoff.wait()
                    continue
                if self._stopping.is_set() and not self.pending:
                    return
                self._wake.clear()
                if self.pending or self._rebuilds:
                    continue
                timeout = max(0.0, next_check - time.monotonic())
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
        finally:
            self.running = self.healthy = False
            for r in self._rebuilds:
                if not r.done.done():
                    r.done.set_exception(RuntimeError("the index writer stopped"))
            self._rebuilds.clear()

    def _put_behind(self, scores: list[tuple[str, str, str, int]]) -> None:
        """Queue scores read from the database under anything newer already queued."""
        for board, period, user, score in scores:
            members = self._scores.setdefault((board, period), {})
            if user not in members and (board, period, user) not in self._removals:
                members[user] = score

    async def drain(self) -> None:
        """Write what is still queued (at shutdown, once the consumers have stopped)."""
        try:
            await self._flush()
        except Exception as exc:
            log.warning("could not write %d queued scores at shutdown: %s", self.pending, exc)

    async def _flush(self) -> None:
        INDEX_PENDING.set(self.pending)
        if not self.pending:
            return
        scores, removals = self._scores, self._removals
        self._scores, self._removals = {}, {}
        try:
            await self.index.write(scores, list(removals))
        except BaseException:
            # Put back what was not written, under anything newer that came in meanwhile.
            for key, members in scores.items():
                newer = self._scores.setdefault(key, {})
                for user, score in members.items():
                    if user not in newer and (key[0], key[1], user) not in self._removals:
                        newer[user] = score
            for member in removals:
                if member[2] not in self._scores.get((member[0], member[1]), {}):
                    self._removals.setdefault(member, None)
            raise

    async def _run_rebuilds(self) -> None:
        while self._rebuilds:
            job = self._rebuilds[0]
            try:
                count = await self.index.replace(
                    job.board, job.period, self.pages(job.board, job.period)
                )
            except (RedisError, OSError):
                raise  # retried by the loop; the caller keeps waiting
            except Exception as exc:
                self._rebuilds.pop(0)
                if not job.done.done():
                    job.done.set_exception(exc)
                continue
            self._rebuilds.pop(0)
            if not job.done.done():
                job.done.set_result(count)

    async def _rebuild_missing(self) -> None:
        periods = await self.open_periods()
        for (board, period), built in zip(periods, await self.index.built(periods), strict=True):
            if not built:
                count = await self.index.replace(board, period, self.pages(board, period))
                INDEX_REBUILDS.labels("missing").inc()
                log.info(
                    "rebuilt leaderboard index from the database",
                    extra={"board": board, "period": period, "members": count},
                )
