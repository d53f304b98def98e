"""The leaderboard serving index: one sorted set per (board, period) on a Redis-protocol server.

PostgreSQL holds the scores; the index only serves them fast. It is written after the
database commit with ABSOLUTE scores (never increments), so writing the same score twice,
late, or after a replay changes nothing, and a lost or flushed index is rebuilt whole from
PostgreSQL. A marker key per (board, period) says the set was built from the database: a
missing marker means the server lost it (restart without persistence, FLUSHALL, eviction),
and the writer rebuilds it.

`IndexWriter` is the one writer of a worker process: commit hooks hand it the new scores,
it coalesces them (the newest score per member wins) and writes them in pipelines, in the
order the commits happened; rebuilds run in the same loop, so a rebuild never overwrites a
newer score with an older one written meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.engagement.domain import display_ranks
from services.engagement.metrics import INDEX_PENDING, INDEX_REBUILDS
from shared.retry import Backoff

log = logging.getLogger(__name__)

PREFIX = "jifen:lb"


def board_key(board: str, period: str) -> str:
    return f"{PREFIX}:{board}:{period}"


def marker_key(board: str, period: str) -> str:
    return f"{PREFIX}:{board}:{period}:built"


# A user's standing in one call: score, how many score higher, how many are ranked, where
# the window of k either side starts, how many score higher than its first member, and the
# window itself (member, score, member, score, ...). Nothing when the user is not ranked.
AROUND = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return false end
local position = redis.call('ZREVRANK', KEYS[1], ARGV[1])
local k = tonumber(ARGV[2])
local start = math.max(0, position - k)
local window = redis.call('ZREVRANGE', KEYS[1], start, position + k, 'WITHSCORES')
local above = redis.call('ZCOUNT', KEYS[1], '(' .. score, '+inf')
local first_above = redis.call('ZCOUNT', KEYS[1], '(' .. window[2], '+inf')
return {score, above, redis.call('ZCARD', KEYS[1]), start, first_above, window}
"""


@dataclass(frozen=True)
class Ranked:
    rank: int
    user_id: str
    score: int


@dataclass(frozen=True)
class UserRank:
    user_id: str
    score: int
    rank: int
    total: int
    around: list[Ranked]


class BoardIndex:
    """Reads and writes of the sorted sets (scores are whole numbers stored as doubles,
    exact up to 2^53)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.redis = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
        )
        self._around = self.redis.register_script(AROUND)

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> None:
        await self.redis.ping()

    # -- writes ---------------------------------------------------------------------------

    async def write(
        self,
        scores: dict[tuple[str, str], dict[str, int]],
        removals: Iterable[tuple[str, str, str]],
    ) -> None:
        """Set these members' scores and remove these (board, period, user) members."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for (board, period), members in scores.items():
                if members:
                    pipe.zadd(board_key(board, period), {u: float(s) for u, s in members.items()})
            for board, period, user in removals:
                pipe.zrem(board_key(board, period), user)
            await pipe.execute()

    async def replace(
        self, board: str, period: str, pages: AsyncIterator[list[tuple[str, int]]]
    ) -> int:
        """Build the set afresh from `pages` of (user, score) and swap it in at once; returns
        how many members it has."""
        key = board_key(board, period)
        scratch = f"{key}:rebuilding"
        await self.redis.delete(scratch)
        count = 0
        async for page in pages:
            if page:
                await self.redis.zadd(scratch, {u: float(s) for u, s in page})
                count += len(page)
        async with self.redis.pipeline(transaction=True) as pipe:
            if count:
                pipe.rename(scratch, key)
            else:
                pipe.delete(key)
            pipe.set(marker_key(board, period), str(int(time.time())))
            await pipe.execute()
        return count

    async def built(self, keys: list[tuple[str, str]]) -> list[bool]:
        if not keys:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for board, period in keys:
                pipe.exists(marker_key(board, period))
            return [bool(found) for found in await pipe.execute()]

    async def drop(self, board: str, period: str) -> None:
        await self.redis.delete(board_key(board, period), marker_key(board, period))

    # -- reads ----------------------------------------------------------------------------

    async def top(self, board: str, period: str, limit: int) -> tuple[list[Ranked], int]:
        """The best `limit` with their display ranks, and how many are ranked."""
        key = board_key(board, period)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrevrange(key, 0, limit - 1, withscores=True)
            pipe.zcard(key)
            found, total = await pipe.execute()
        scores = [int(s) for _, s in found]
        ranks = display_ranks(scores)
        ranked = [Ranked(r, u, s) for (u, _), s, r in zip(found, scores, ranks, strict=True)]
        return ranked, int(total)

    async def user(self, board: str, period: str, user_id: str, k: int) -> UserRank | None:
        """A user's score, competition rank, the number ranked and `k` users either side;
        None when the user is not on the board. One round trip (a server-side script)."""
        found = await self._around(keys=[board_key(board, period)], args=[user_id, k])
        if not found:
            return None
        score, above, total, start, first_above, window = found
        rank = int(above) + 1
        members = window[0::2]
        scores = [int(float(s)) for s in window[1::2]]
        ranks = display_ranks(scores, int(start) + 1, int(first_above) + 1)
        around = [Ranked(r, u, s) for u, s, r in zip(members, scores, ranks, strict=True)]
        return UserRank(user_id, int(float(score)), rank, int(total), around)

    async def total(self, board: str, period: str) -> int:
        return int(await self.redis.zcard(board_key(board, period)))


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
