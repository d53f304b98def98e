"""The batch consumer loop: fetch, parse, apply in one transaction, then commit offsets.

Safety rules (see the brief): no auto-commit, offsets committed only after the database
commit, poison messages go to <topic>.dlq and the loop keeps going, transient failures are
retried with backoff and never skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from sqlalchemy import Table

from shared import tracing
from shared.db import Database
from shared.failpoints import failpoint
from shared.messaging.consumer.dead_letters import DeadLetters
from shared.messaging.consumer.group_health import JoinFailures, StallWatch, join_group
from shared.messaging.consumer.handler import BatchHandler, Inbound, PoisonMessage
from shared.messaging.consumer.offsets import HandOver, OffsetTracker
from shared.messaging.consumer.top_up import TopUp
from shared.messaging.embedded_broker import rebuild_group
from shared.messaging.inbox import claim_inbox
from shared.metrics import (
    CONSUMER_BATCH_SECONDS,
    CONSUMER_GROUP_REBUILDS,
    CONSUMER_RESTARTS,
    CONSUMER_RETRIES,
    MESSAGES_CONSUMED,
)
from shared.retry import Backoff, is_transient
from shared.settings import JifenSettings

log = logging.getLogger(__name__)


class ConsumerLoop:
    """Runs one handler as a member of its consumer group until stopped.

    A join that brings no assignment, or a member left with no partitions while the group's
    offsets stand still, makes it leave and join again (see `group_health`).
    """

    def __init__(
        self,
        handler: BatchHandler[Any],
        *,
        settings: JifenSettings,
        db: Database,
        producer: AIOKafkaProducer,
        inbox: Table,
        group_id: str | None = None,
        after_db_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.handler = handler
        self.settings = settings
        self.db = db
        self.inbox = inbox
        self.group_id = group_id or f"{settings.consumer_group_prefix}.{handler.name}"
        self.after_db_commit = after_db_commit  # fault-injection seam for crash tests
        self.healthy = False
        self.offsets = OffsetTracker(settings.consumer_commit_interval_ms)
        self.top_up = TopUp(
            settings.consumer_top_up_ms, settings.consumer_batch_size, settings.consumer_linger_ms
        )
        self.dead_letters = DeadLetters(
            producer, settings.service_name, handler.name, settings.retry_backoff_max_s
        )
        self.join_failures = JoinFailures(self.group_id, self._rebuild_group)
        self._labels = (settings.service_name, handler.name)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            await self.run_member()

    async def run_member(self) -> None:
        """Join the group as a new member and consume until stopped, or until the group is
        found stalled (then return, and `run` joins again)."""
        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=self.group_id,
            client_id=f"jifen-{s.service_name}-{self.handler.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.consumer_batch_size,
            session_timeout_ms=s.kafka_session_timeout_ms,
            heartbeat_interval_ms=s.kafka_heartbeat_interval_ms,
            fetch_max_wait_ms=(
                s.kafka_background_fetch_max_wait_ms
                if self.handler.background
                else s.kafka_fetch_max_wait_ms
            ),
        )
        consumer.subscribe(list(self.handler.topics), listener=HandOver(self.offsets, consumer))
        what = f"consumer {self.handler.name}"
        if not await join_group(consumer, what, s.consumer_stall_restart_s):
            CONSUMER_RESTARTS.labels(*self._labels).inc()
            if await self.join_failures.failed():
                CONSUMER_GROUP_REBUILDS.labels(*self._labels).inc()
            return
        self.join_failures.joined()
        self.healthy = True
        watch = StallWatch(s.consumer_stall_restart_s)
        try:
            while not self._stopping.is_set():
                await self.top_up.pace()
                batches = await consumer.getmany(
                    timeout_ms=s.consumer_poll_ms, max_records=s.consumer_batch_size
                )
                records = [r for recs in batches.values() for r in recs]
                if not records:
                    self.top_up.last_size = 0
                    if self.offsets.pending:  # idle: nothing to batch the commit with
                        async with self.offsets.batch_lock:
                            await self.offsets.flush(consumer)
                    if await watch.stalled(consumer, self.handler.topics, what):
                        CONSUMER_RESTARTS.labels(*self._labels).inc()
                        return
                    continue
                records = await self.top_up.take(consumer, records)
                async with self.offsets.batch_lock:
                    await self._process(records)
                    failpoint("consumer.after_db_commit")
                    self.offsets.applied(records)
                    if self.offsets.due():
                        await self.offsets.flush(consumer)
        finally:
            self.healthy = False
            try:
                await self.offsets.flush(consumer)
            finally:
                await consumer.stop()

    async def _rebuild_group(self) -> bool:
        return await rebuild_group(
            self.settings.kafka_bootstrap, self.db, self.group_id, self.handler.topics
        )

    async def _process(self, records: list[ConsumerRecord]) -> None:
        start = time.perf_counter()
        # What the batch sends continues its records' traces (shared/tracing.py).
        with tracing.consuming(records, self.group_id):
            items: list[Inbound[Any]] = []
            for record in records:
                try:
                    parsed = self.handler.parse(record)
                except PoisonMessage as exc:
                    await self.dead_letters.send(record, str(exc))
                    continue
                for item in parsed:
                    item.record = record
                items.extend(parsed)
            if items:
                await self.handler.prepare(items)
                await self._apply_with_retry(items)
                if self.after_db_commit is not None:
                    await self.after_db_commit()
        CONSUMER_BATCH_SECONDS.labels(*self._labels).observe(time.perf_counter() - start)

    async def _apply_once(self, items: list[Inbound[Any]]) -> None:
        async with self.db.transaction() as session:
            if self.handler.use_inbox:
                fresh = await claim_inbox(
                    session,
                    self.inbox,
                    self.handler.name,
                    [i.message_id for i in items if i.message_id is not None],
                )
                new_items = []
                for item in items:
                    if item.message_id is None:  # idempotent by itself (see Inbound)
                        new_items.append(item)
                    elif item.message_id in fresh:
                        new_items.append(item)
                        fresh.discard(item.message_id)  # a repeat inside the batch is a duplicate
            else:
                new_items = items
            if new_items:
                await self.handler.apply(session, new_items)
        MESSAGES_CONSUMED.labels(*self._labels, "applied").inc(len(new_items))
        MESSAGES_CONSUMED.labels(*self._labels, "duplicate").inc(len(items) - len(new_items))

    async def _apply_with_retry(self, items: list[Inbound[Any]]) -> None:
        """Apply a batch; retry transient failures forever; isolate a poison item by bisection."""
        backoff = Backoff(cap=self.settings.retry_backoff_max_s)
        while True:
            try:
                await self._apply_once(items)
                return
            except Exception as exc:
                if is_transient(exc):
                    if self._stopping.is_set():
                        raise
                    CONSUMER_RETRIES.labels(*self._labels).inc()
                    log.warning("transient failure applying batch, retrying: %s", exc)
                    await backoff.wait()
                    continue
                if len(items) == 1:
                    record = items[0].record
                    log.error("message cannot be applied, dead-lettering: %s", exc)
                    if record is not None:
                        await self.dead_letters.send(
                            record, f"apply failed: {type(exc).__name__}: {exc}"
                        )
                    return
                middle = len(items) // 2
                await self._apply_with_retry(items[:middle])
                await self._apply_with_retry(items[middle:])
                return
