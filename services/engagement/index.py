"""The leaderboard serving index: one sorted set per (board, period) on a Redis-protocol server.

PostgreSQL holds the scores; the index only serves them fast. It is written after the
database commit with ABSOLUTE scores (never increments), so writing the same score twice,
late, or after a replay changes nothing, and a lost or flushed index is rebuilt whole from
PostgreSQL. A marker key per (board, period) says the set was built from the database: a
missing marker means the server lost it (restart without persistence, FLUSHALL, eviction),
and the writer rebuilds it.

`IndexWriter` (in `workers.py`) is the one writer of a worker process: commit hooks hand it
the new scores, it coalesces them (the newest score per member wins) and writes them in
pipelines, in the order the commits happened; rebuilds run in the same loop, so a rebuild
never overwrites a newer score with an older one written meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis

from services.engagement.domain import display_ranks

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
