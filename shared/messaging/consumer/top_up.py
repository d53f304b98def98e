"""Top-up: after a long batch, the records that arrived meanwhile join the next one."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import ConsumerRecord


class TopUp:
    """Adds what arrived while the previous batch was being applied.

    The client prefetches a partition only once its buffer is empty, so after a long batch
    the buffer holds records fetched near the start of that batch, and whatever arrived
    since would wait a whole further batch. Taking the buffer sends a fresh fetch at once;
    waiting briefly for its answer takes those records along (one batch of latency fewer
    per hop under load, and bigger batches).
    """

    def __init__(self, wait_ms: int, batch_size: int, linger_ms: int = 0) -> None:
        self.wait_ms = wait_ms
        self.batch_size = batch_size
        self.linger_s = linger_ms / 1000
        self.last_take = 0.0  # monotonic time the previous batch was taken
        self.last_size = 0  # records in it

    async def pace(self) -> None:
        """After a small batch, let `linger_ms` pass since it was taken before taking the next.

        At low rates every fetch comes back at once with the one or two records that arrived,
        so each hop paid a fetch, a transaction, an offset commit and a publish for a handful
        of records, in every consumer, and the broker answered hundreds of fetches a second.
        Lingering lets records gather at the broker; the next take then sends a fresh fetch
        and the top-up waits for it, so the batch holds what arrived meanwhile. Under load
        batches are full and nothing waits; after an idle poll (no records) nothing waits."""
        if self.linger_s and 0 < self.last_size < self.batch_size:
            delay = self.last_take + self.linger_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def take(self, consumer: Any, records: list[ConsumerRecord]) -> list[ConsumerRecord]:
        """`records` plus whatever else is there within `wait_ms`, when the previous batch
        took longer than that."""
        taken_at, self.last_take = self.last_take, time.monotonic()
        room = self.batch_size - len(records)
        if not self.wait_ms or room <= 0 or self.last_take - taken_at < self.wait_ms / 1000:
            self.last_size = len(records)
            return records
        more = await consumer.getmany(timeout_ms=self.wait_ms, max_records=room)
        self.last_take = time.monotonic()
        records = records + [r for recs in more.values() for r in recs]
        self.last_size = len(records)
        return records
