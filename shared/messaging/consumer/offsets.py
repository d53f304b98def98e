"""Offsets: committed to the broker only for batches whose database transaction committed,
and handed over cleanly when a rebalance takes partitions away."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from shared.failpoints import failpoint

log = logging.getLogger(__name__)


class OffsetTracker:
    """The offsets of batches applied to the database and not yet committed to the broker.

    `batch_lock` is held while a batch is applied and its offsets recorded, so a rebalance
    (see `HandOver`) waits for the batch in flight and then commits what it applied.
    """

    def __init__(self, commit_interval_ms: int) -> None:
        self.commit_interval_s = commit_interval_ms / 1000
        self.batch_lock = asyncio.Lock()
        self.pending: dict[TopicPartition, int] = {}
        self.committed_at = 0.0

    def applied(self, records: Iterable[ConsumerRecord]) -> None:
        """Record that these records' database work has committed."""
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            self.pending[tp] = max(self.pending.get(tp, 0), r.offset + 1)

    def due(self) -> bool:
        return time.monotonic() - self.committed_at >= self.commit_interval_s

    async def flush(self, consumer: AIOKafkaConsumer) -> None:
        """Commit the offsets of every batch applied so far."""
        if not self.pending:
            return
        offsets, self.pending = self.pending, {}
        self.committed_at = time.monotonic()
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # Typically a rebalance took the partition away; whoever owns it now re-reads from
            # the last committed offset and the inbox turns the re-read into no-ops.
            log.warning("offset commit failed (will be re-read idempotently): %s", exc)
            return
        failpoint("consumer.after_offset_commit")


class HandOver(ConsumerRebalanceListener):
    """Let a rebalance wait until the batch in flight has committed, and hand over the offsets
    of what this member has applied, so hand-overs are clean."""

    def __init__(self, offsets: OffsetTracker, consumer: AIOKafkaConsumer) -> None:
        self.offsets = offsets
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.offsets.batch_lock:
            await self.offsets.flush(self.consumer)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None
