"""Kafka plumbing: the producer, topic creation, the batch consumer loop and the outbox relay.

Safety rules (see the brief): no auto-commit, offsets committed only after the database
commit, producers wait for acks from all in-sync replicas, poison messages go to <topic>.dlq
and the loop keeps going, transient failures are retried with backoff and never skipped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.protocol.admin import DeleteGroupsRequest
from pydantic import BaseModel, ValidationError
from sqlalchemy import Table, func, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.events import dlq_topic
from shared.failpoints import failpoint
from shared.messaging import (
    COUNT_OVERDUE,
    DELETE_PUBLISHED,
    LOCK_UNPUBLISHED,
    QueuedRow,
    claim_inbox,
    queued_rows,
)
from shared.metrics import (
    CONSUMER_BATCH_SECONDS,
    CONSUMER_GROUP_REBUILDS,
    CONSUMER_RESTARTS,
    CONSUMER_RETRIES,
    DEAD_LETTERS,
    MESSAGES_CONSUMED,
    OUTBOX_BACKLOG,
    OUTBOX_PUBLISHED,
)
from shared.settings import JifenSettings
from shared.worker import PollingWorker

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


class PoisonMessage(Exception):
    """A message that can never be applied (unparseable, invalid): it goes to the DLQ."""


# SQLSTATE classes and codes worth retrying: connection trouble, serialization failure,
# deadlock, resource exhaustion, server shutting down or starting, lock timeouts.
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "40", "53", "57P", "55P03", "58")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, KafkaError):
        return True  # broker unreachable or leader moving: wait for it
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if sqlstate:
            return str(sqlstate).startswith(_TRANSIENT_SQLSTATE_PREFIXES)
        return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError))
    if isinstance(exc, (sa_exc.TimeoutError, sa_exc.DisconnectionError)):
        return True
    cause = exc.__cause__
    return cause is not None and cause is not exc and is_transient(cause)


class Backoff:
    """Exponential backoff with jitter, reset after a success."""

    def __init__(self, base: float = 0.05, cap: float = 10.0) -> None:
        self.base, self.cap, self.attempt = base, cap, 0

    async def wait(self) -> None:
        delay = min(self.cap, self.base * (2**self.attempt)) * (0.5 + random.random() / 2)
        self.attempt += 1
        await asyncio.sleep(delay)

    def reset(self) -> None:
        self.attempt = 0


def make_producer(settings: JifenSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=f"jifen-{settings.service_name}",
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
    )


async def start_with_retry(client: Any, what: str, attempts: int = 60) -> None:
    """Start a Kafka client, waiting for the broker to come up (compose starts things in parallel)."""
    backoff = Backoff(base=0.2, cap=3.0)
    for attempt in range(attempts):
        try:
            await client.start()
            return
        except KafkaError as exc:
            if attempt == attempts - 1:
                raise
            log.warning("%s cannot reach the broker yet: %s", what, exc)
            await backoff.wait()


async def ensure_topics(
    bootstrap: str, topics: Sequence[str], partitions: int, replication_factor: int = 1
) -> None:
    """Create the topics (and their dead-letter topics) if they are missing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="jifen-admin")
    await start_with_retry(admin, "admin client")
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            t, num_partitions=partitions, replication_factor=replication_factor
                        )
                        for t in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass
            log.info("created topics %s", missing)
    finally:
        await admin.close()


def parse_model(record: ConsumerRecord, model: type[M], what: str) -> M:
    """Validate a record's JSON value as `model`; an invalid one is poison."""
    try:
        return model.model_validate_json(record.value or b"")
    except ValidationError as exc:
        raise PoisonMessage(f"invalid {what}: {exc.errors(include_url=False)}") from exc


@dataclass
class Inbound:
    """One unit of work taken from a Kafka record: its inbox id and its parsed value."""

    message_id: str
    value: Any
    record: ConsumerRecord | None = field(default=None, repr=False)


class BatchHandler(Protocol):
    """What a service plugs into the consumer loop."""

    name: str  # consumer name: inbox namespace and consumer group suffix
    topics: Sequence[str]
    use_inbox: bool  # False when the handler's own unique keys already make it idempotent

    def parse(self, record: ConsumerRecord) -> list[Inbound]:
        """Decode and validate one record (raise PoisonMessage when it can never apply)."""
        ...

    async def apply(self, session: AsyncSession, items: list[Inbound]) -> None:
        """Apply new (never applied before) items in order, inside the caller's transaction."""
        ...


class StallWatch:
    """Notices a consumer group that has stopped without anyone being told.

    Seen with the embedded broker after a member was killed during a broker pause: the
    surviving member ends up in the group with no partitions, its heartbeats keep succeeding,
    and nothing ever triggers another rebalance, so the group's partitions go unread for good.
    A member with no partitions is normal (more members than partitions), so the sign is a
    conjunction, checked on two looks `after_s` apart: this member had no partitions the whole
    time, and some partition had records waiting past a committed offset that did not move.
    With an owner alive, its commits move the offset. The member then leaves and joins
    again, which makes the broker rebalance.
    """

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self.reset()

    def reset(self) -> None:
        self.empty_since: float | None = None
        self._looked_at = 0.0
        self._seen: dict[TopicPartition, int] | None = None

    def due(self, now: float) -> bool:
        """Time for a look at the group's offsets (the first comes as soon as the member is
        found with no partitions; the next `after_s` later)."""
        if self.empty_since is None:
            self.empty_since = now
            return True
        return now - self._looked_at >= self.after_s

    def observe(self, now: float, waiting: dict[TopicPartition, int]) -> bool:
        """Record a look; True when the group is stalled."""
        previous, self._seen, self._looked_at = self._seen, waiting, now
        if previous is None:
            return False
        return any(previous.get(tp) == offset for tp, offset in waiting.items())


async def join_group(consumer: Any, what: str, within_s: float) -> bool:
    """Start a group consumer; False (the consumer stopped, so it has left the group) when
    it has no assignment within `within_s`.

    aiokafka's `start()` returns only once the group has given this member its partitions
    (none is an answer too). Seen with the embedded broker in a 100-cycle chaos run (seed
    550042): after a member died while others joined, a restarted member's join never
    completed, so it sat unready for good and StallWatch, which looks only after the join,
    never ran. Joining again as a new member gets the group going; a join that is merely
    slow (the group waits for a member busy with a long batch) only starts over.

    However the join ends early (timeout, shutdown cancelling it, the broker unreachable),
    the consumer is stopped: a member abandoned mid-join that never leaves keeps the group
    waiting for it, up to the rebalance timeout, and every other member's join with it.
    """
    try:
        await asyncio.wait_for(start_with_retry(consumer, what), within_s)
        return True
    except TimeoutError:
        log.warning("%s: no assignment %.0fs after joining; joining again", what, within_s)
        await consumer.stop()
        return False
    except BaseException:
        await consumer.stop()
        raise


# A join that brings no assignment is first retried as a new member; when the next one fails
# as well, the group itself is broken and is rebuilt.
REBUILD_AFTER_FAILED_JOINS = 2


def rebuild_lock(group_id: str) -> Any:
    """Take the transaction-scoped advisory lock on rebuilding `group_id` (True if taken)."""
    return func.pg_try_advisory_xact_lock(func.hashtext(f"jifen.consumer-group:{group_id}"))


async def topic_partitions(
    admin: AIOKafkaAdminClient, topics: Sequence[str]
) -> list[TopicPartition]:
    """Every partition of `topics`, as the broker describes them."""
    described = await admin.describe_topics(list(topics))
    return [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]


async def delete_group(admin: AIOKafkaAdminClient, group_id: str) -> None:
    """Delete a consumer group and its committed offsets; raises the broker's refusal (real
    Kafka refuses while the group has members; the embedded broker never does)."""
    coordinator = await admin.find_coordinator(group_id)
    # aiokafka's admin client has no DeleteGroups call: its request class is public, the way
    # to send it to one node is not.
    response = await admin._send_request_to_node(coordinator, DeleteGroupsRequest([group_id]))
    [(_, code)] = response.results
    if code:
        raise for_code(code)(f"could not delete group {group_id}")


@contextlib.asynccontextmanager
async def group_admin(
    bootstrap: str, group_id: str
) -> AsyncIterator[tuple[AIOKafkaAdminClient, AIOKafkaConsumer]]:
    """An admin client, and a consumer of `group_id` that never joins it: it reads and commits
    the group's offsets for partitions it is assigned by hand."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="jifen-admin")
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    try:
        await admin.start()
        await reader.start()
        yield admin, reader
    finally:
        try:
            await reader.stop()
        finally:
            await admin.close()


async def rebuild_group(bootstrap: str, db: Database, group_id: str, topics: Sequence[str]) -> bool:
    """Delete a consumer group that no longer completes joins and recreate its committed
    offsets; True when rebuilt, False when another replica is doing it or the broker refused.

    Seen with the embedded broker (Tansu 0.6) in 100-cycle chaos runs: a group left in a state
    its coordinator calls `Unknown` (forming, with a leader that is no longer a member),
    holding only the member that is joining, and no join ever completes, however often the
    member leaves and joins again (a fresh group on the same broker joins in seconds).
    Deleting the group clears that state, and its committed offsets with it, so they are read
    first and committed again right after, before a member can join and fall back to the
    earliest offset.

    Nothing is lost or applied twice: committed offsets never run ahead of the database, so
    whatever a member commits meanwhile, or a snapshot that is a little old, means at worst
    records delivered again, which the inbox turns away. Replicas of one service share a
    database, and the advisory lock lets one of them rebuild at a time: a rebuild that read
    offsets between another's delete and its recommit would delete them for good. Real Kafka
    refuses to delete a group that has members (nothing is then recommitted).
    """
    async with db.transaction() as session:
        if not await session.scalar(select(rebuild_lock(group_id))):
            log.info("group %s: another replica is rebuilding it", group_id)
            return False
        async with group_admin(bootstrap, group_id) as (admin, reader):
            saved = {}
            for tp in await topic_partitions(admin, topics):
                offset = await reader.committed(tp)
                if offset is not None:
                    saved[tp] = offset
            try:
                await delete_group(admin, group_id)
            except KafkaError as exc:
                log.warning("group %s: the broker would not delete it: %r", group_id, exc)
                return False
            if saved:
                reader.assign(list(saved))
                await reader.commit(saved)
            log.warning(
                "group %s: deleted and recreated with its committed offsets on %d partitions",
                group_id,
                len(saved),
            )
            return True


class _WaitForBatch(ConsumerRebalanceListener):
    """Let a rebalance wait until the batch in flight has committed, and hand over the offsets
    of what this member has applied, so hand-overs are clean."""

    def __init__(self, loop: ConsumerLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.loop._batch_lock:
            if self.loop.consumer is not None:
                await self.loop._flush_offsets(self.loop.consumer)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


class ConsumerLoop:
    def __init__(
        self,
        handler: BatchHandler,
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
        self.producer = producer
        self.inbox = inbox
        self.group_id = group_id or f"{settings.consumer_group_prefix}.{handler.name}"
        self.after_db_commit = after_db_commit  # fault-injection seam for crash tests
        self._stopping = asyncio.Event()
        self._batch_lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self.healthy = False
        self._last_take = 0.0
        # Offsets of batches already committed to the database, not yet to the broker.
        self._applied: dict[TopicPartition, int] = {}
        self._offsets_committed_at = 0.0
        self._failed_joins = 0  # joins in a row that brought no assignment

    def stop(self) -> None:
        self._stopping.set()

    @property
    def _labels(self) -> tuple[str, str]:
        return self.settings.service_name, self.handler.name

    async def run(self) -> None:
        while not self._stopping.is_set():
            await self._run_one_consumer()

    async def _run_one_consumer(self) -> None:
        """Consume until stopped, or until the group is found stalled (then return, and `run`
        joins again as a new member)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.group_id,
            client_id=f"jifen-{self.settings.service_name}-{self.handler.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.settings.consumer_batch_size,
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=self.settings.kafka_heartbeat_interval_ms,
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
        )
        consumer.subscribe(list(self.handler.topics), listener=_WaitForBatch(self))
        self.consumer = consumer
        what = f"consumer {self.handler.name}"
        if not await join_group(consumer, what, self.settings.consumer_stall_restart_s):
            CONSUMER_RESTARTS.labels(*self._labels).inc()
            self._failed_joins += 1
            if self._failed_joins >= REBUILD_AFTER_FAILED_JOINS:
                await self._rebuild_group()
            return
        self._failed_joins = 0
        self.healthy = True
        watch = StallWatch(self.settings.consumer_stall_restart_s)
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(
                    timeout_ms=self.settings.consumer_poll_ms,
                    max_records=self.settings.consumer_batch_size,
                )
                records = [r for recs in batches.values() for r in recs]
                if not records:
                    if self._applied:  # idle: nothing to batch the commit with
                        async with self._batch_lock:
                            await self._flush_offsets(consumer)
                    if await self._stalled(consumer, watch):
                        CONSUMER_RESTARTS.labels(*self._labels).inc()
                        return
                    continue
                records = await self._top_up(consumer, records)
                async with self._batch_lock:
                    await self._process(records)
                    failpoint("consumer.after_db_commit")
                    for r in records:
                        tp = TopicPartition(r.topic, r.partition)
                        self._applied[tp] = max(self._applied.get(tp, 0), r.offset + 1)
                    interval = self.settings.consumer_commit_interval_ms / 1000
                    if time.monotonic() - self._offsets_committed_at >= interval:
                        await self._flush_offsets(consumer)
        finally:
            self.healthy = False
            try:
                if self._applied:
                    await self._flush_offsets(consumer)
            finally:
                await consumer.stop()

    async def _rebuild_group(self) -> None:
        """The group has failed joins in a row: rebuild it (see rebuild_group). A rebuild that
        cannot run now (broker or database away) is tried again after the next failed join."""
        try:
            async with asyncio.timeout(60):
                rebuilt = await rebuild_group(
                    self.settings.kafka_bootstrap, self.db, self.group_id, self.handler.topics
                )
        except Exception:  # the way out of a stuck group must never be what stops the consumer
            log.warning("group %s: rebuild failed; joining again", self.group_id, exc_info=True)
            return
        if rebuilt:
            CONSUMER_GROUP_REBUILDS.labels(*self._labels).inc()
        self._failed_joins = 0

    async def _stalled(self, consumer: AIOKafkaConsumer, watch: StallWatch) -> bool:
        """True when this member has had no partitions for a while and the group's committed
        offsets have not moved while records wait (see StallWatch)."""
        now = time.monotonic()
        if consumer.assignment():
            watch.reset()
            return False
        if not watch.due(now):
            return False
        try:
            waiting = await self._waiting_offsets(consumer)
        except KafkaError as exc:  # the broker is away: not a verdict on the group
            log.debug("stall check skipped: %s", exc)
            return False
        except Exception:  # a watchdog must never be what stops the consumer
            log.warning("stall check failed", exc_info=True)
            return False
        if not watch.observe(now, waiting):
            return False
        log.warning(
            "consumer %s: no partitions for %.0fs while the group's committed offsets stood "
            "still with records waiting on %s; leaving and joining the group again",
            self.handler.name,
            now - (watch.empty_since or now),
            sorted(f"{tp.topic}[{tp.partition}]" for tp in waiting),
        )
        return True

    async def _waiting_offsets(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        """The group's committed offset of every partition with records past it."""
        partitions = [
            TopicPartition(topic, p)
            for topic in self.handler.topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return {}
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        waiting = {}
        for tp in partitions:
            committed = await consumer.committed(tp)
            position = committed if committed is not None else starts.get(tp, 0)
            if ends.get(tp, 0) > position:
                waiting[tp] = position
        return waiting

    async def _top_up(
        self, consumer: AIOKafkaConsumer, records: list[ConsumerRecord]
    ) -> list[ConsumerRecord]:
        """Add what arrived while the previous batch was being applied.

        The client prefetches a partition only once its buffer is empty, so after a long batch
        the buffer holds records fetched near the start of that batch, and whatever arrived
        since would wait a whole further batch. Taking the buffer sends a fresh fetch at once;
        waiting briefly for its answer takes those records along (one batch of latency fewer
        per hop under load, and bigger batches).
        """
        taken_at, self._last_take = self._last_take, time.monotonic()
        wait_ms = self.settings.consumer_top_up_ms
        room = self.settings.consumer_batch_size - len(records)
        if not wait_ms or room <= 0 or self._last_take - taken_at < wait_ms / 1000:
            return records
        more = await consumer.getmany(timeout_ms=wait_ms, max_records=room)
        self._last_take = time.monotonic()
        return records + [r for recs in more.values() for r in recs]

    async def _process(self, records: list[ConsumerRecord]) -> None:
        start = time.perf_counter()
        items: list[Inbound] = []
        for record in records:
            try:
                parsed = self.handler.parse(record)
            except PoisonMessage as exc:
                await self._dead_letter(record, str(exc))
                continue
            for item in parsed:
                item.record = record
            items.extend(parsed)
        if items:
            await self._apply_with_retry(items)
            if self.after_db_commit is not None:
                await self.after_db_commit()
        CONSUMER_BATCH_SECONDS.labels(*self._labels).observe(time.perf_counter() - start)

    async def _apply_once(self, items: list[Inbound]) -> int:
        async with self.db.transaction() as session:
            if self.handler.use_inbox:
                fresh = await claim_inbox(
                    session, self.inbox, self.handler.name, [i.message_id for i in items]
                )
                new_items = []
                for item in items:
                    if item.message_id in fresh:
                        new_items.append(item)
                        fresh.discard(item.message_id)  # a repeat inside the batch is a duplicate
            else:
                new_items = items
            if new_items:
                await self.handler.apply(session, new_items)
        MESSAGES_CONSUMED.labels(*self._labels, "applied").inc(len(new_items))
        MESSAGES_CONSUMED.labels(*self._labels, "duplicate").inc(len(items) - len(new_items))
        return len(new_items)

    async def _apply_with_retry(self, items: list[Inbound]) -> None:
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
                        await self._dead_letter(
                            record, f"apply failed: {type(exc).__name__}: {exc}"
                        )
                    return
                middle = len(items) // 2
                await self._apply_with_retry(items[:middle])
                await self._apply_with_retry(items[middle:])
                return

    async def _dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        raw: bytes = record.value or b""
        try:
            original_text: str | None = raw.decode("utf-8")
        except UnicodeDecodeError:
            original_text = None
        letter = {
            "error": reason[:2000],
            "consumer": self.handler.name,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key.decode("utf-8", "replace") if record.key else None,
            "original": original_text,
            "original_base64": base64.b64encode(raw).decode("ascii"),
            "failed_at": datetime.now(UTC).isoformat(),
        }
        backoff = Backoff(cap=self.settings.retry_backoff_max_s)
        while True:
            try:
                await self.producer.send_and_wait(
                    dlq_topic(record.topic), json.dumps(letter).encode(), key=record.key
                )
                break
            except KafkaError as exc:
                log.warning("dead-letter publish failed, retrying: %s", exc)
                await backoff.wait()
        DEAD_LETTERS.labels(self.settings.service_name, record.topic).inc()
        MESSAGES_CONSUMED.labels(*self._labels, "dead_lettered").inc()
        log.warning(
            "dead-lettered message",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "reason": reason,
            },
        )

    async def _flush_offsets(self, consumer: AIOKafkaConsumer) -> None:
        """Commit the offsets of every batch applied so far (their database work has committed)."""
        if not self._applied:
            return
        offsets, self._applied = self._applied, {}
        self._offsets_committed_at = time.monotonic()
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # Typically a rebalance took the partition away; whoever owns it now re-reads from
            # the last committed offset and the inbox turns the re-read into no-ops.
            log.warning("offset commit failed (will be re-read idempotently): %s", exc)
            return
        failpoint("consumer.after_offset_commit")


class OutboxRelay(PollingWorker):
    """Publishes outbox rows to Kafka in id order and deletes them once acknowledged.

    With publishing on commit (the default) it is the sweeper: it takes only rows older than
    `outbox_sweep_after_ms`, the ones the publisher could not send, and on shutdown all of
    them. Replicas are safe: each claims rows with FOR UPDATE SKIP LOCKED. A crash between
    the publish and the delete re-publishes, which downstream inboxes absorb.
    """

    def __init__(self, settings: JifenSettings, db: Database, producer: AIOKafkaProducer) -> None:
        super().__init__(
            poll_s=settings.relay_poll_ms / 1000,
            full_batch=settings.relay_batch_size,
            backoff_cap_s=settings.retry_backoff_max_s,
            linger_s=settings.worker_linger_ms / 1000,
        )
        self.settings = settings
        self.db = db
        self.producer = producer

    def min_age_s(self) -> float:
        if self._stopping.is_set() or not self.settings.outbox_publish_on_commit:
            return 0.0
        return self.settings.outbox_sweep_after_ms / 1000

    async def step(self) -> int:
        return await self.publish_once(self.min_age_s(), report_backlog=True)

    async def publish_once(self, min_age_s: float = 0.0, *, report_backlog: bool = False) -> int:
        limit = self.settings.relay_batch_size
        async with self.db.transaction() as session:
            rows = (
                await session.execute(LOCK_UNPUBLISHED, {"limit": limit, "min_age_s": min_age_s})
            ).all()
            if report_backlog:
                # What the sweep found is the backlog, unless it found a full batch: only then
                # are the rest counted (a scan of the table, which after a burst can hold many
                # pages of deleted rows until vacuum; counting every sweep cost a service
                # 15 ms a second after the 100k-event bench run). Counted in the transaction
                # that took the rows, so both see the same now().
                overdue = len(rows)
                if overdue >= limit:
                    overdue = (
                        await session.execute(COUNT_OVERDUE, {"min_age_s": min_age_s})
                    ).scalar_one()
                OUTBOX_BACKLOG.labels(self.settings.service_name).set(overdue)
            if not rows:
                return 0
            futures = [await send_row(self.producer, row) for row in rows]
            await asyncio.gather(*futures)
            failpoint("relay.after_publish")
            await session.execute(DELETE_PUBLISHED, {"ids": [row.id for row in rows]})
        _count_published(self.settings.service_name, "relay", (row.topic for row in rows))
        return len(rows)


class _OutboxRow(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> str | None: ...
    @property
    def payload(self) -> str: ...  # the JSON text as stored


async def send_row(producer: AIOKafkaProducer, row: _OutboxRow) -> asyncio.Future[Any]:
    """Hand one outbox row to the producer; the returned future resolves on the broker's ack."""
    future: asyncio.Future[Any] = await producer.send(
        row.topic, row.payload.encode("utf-8"), key=row.key.encode("utf-8") if row.key else None
    )
    return future


def _count_published(service: str, via: str, topics: Iterable[str]) -> None:
    for topic, n in Counter(topics).items():
        OUTBOX_PUBLISHED.labels(service, topic, via).inc(n)


class OutboxPublisher:
    """Publishes the outbox rows of each transaction right after it commits, then deletes them.

    This takes the relay's poll and its locking read off every event's path. It is best effort
    by design: rows it cannot send (broker away, queue full, process killed) stay unpublished
    in the table and the relay sends them once they are `outbox_sweep_after_ms` old. A row
    sent here whose delete is lost goes out again from the relay; downstream inboxes absorb
    it, as they do for the relay's own crash window.

    Two loops pipeline the work: the sender hands rows to the producer as they arrive, the
    deleter waits for their acks and deletes everything acked so far with one statement.
    """

    def __init__(self, settings: JifenSettings, db: Database, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.db = db
        self.producer = producer
        self._queue: list[QueuedRow] = []
        self._queued = asyncio.Event()
        self._sent: list[tuple[list[QueuedRow], list[asyncio.Future[Any]]]] = []
        self._have_sent = asyncio.Event()
        self._in_flight = 0  # rows accepted and not yet deleted or given up
        self._drained = asyncio.Event()  # set while _in_flight is 0
        self._drained.set()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    def on_commit(self, session: AsyncSession) -> None:
        """The Database's after-commit hook: queue the rows the transaction wrote."""
        rows = queued_rows(session)
        if not rows or self._closing:
            return
        if len(self._queue) + len(rows) > self.settings.outbox_publish_queue:
            return  # the broker is not keeping up: these wait for the relay
        self._queue.extend(rows)
        self._in_flight += len(rows)
        self._drained.clear()
        self._queued.set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="outbox-publisher-send"),
            asyncio.create_task(self._delete_loop(), name="outbox-publisher-delete"),
        ]

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop taking rows and finish the ones taken; what is left is the relay's."""
        self._closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), timeout_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _send_loop(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            rows, self._queue = self._queue, []
            futures: list[asyncio.Future[Any]] = []
            try:
                for row in rows:
                    futures.append(await send_row(self.producer, row))
            except Exception as exc:  # the relay sends whatever did not get handed over
                log.warning("publish on commit failed, left to the relay: %s", exc)
                self._settled(len(rows) - len(futures))
                rows = rows[: len(futures)]
            if rows:
                self._sent.append((rows, futures))
                self._have_sent.set()

    async def _delete_loop(self) -> None:
        while True:
            await self._have_sent.wait()
            self._have_sent.clear()
            groups, self._sent = self._sent, []
            acked: list[QueuedRow] = []
            taken = 0
            for rows, futures in groups:
                taken += len(rows)
                results = await asyncio.gather(*futures, return_exceptions=True)
                acked.extend(
                    row
                    for row, result in zip(rows, results, strict=True)
                    if not isinstance(result, BaseException)
                )
            try:
                if acked:
                    failpoint("publisher.after_send")
                    await self._delete_sent([row.id for row in acked])
                    _count_published(
                        self.settings.service_name, "commit", (row.topic for row in acked)
                    )
            finally:
                self._settled(taken)

    def _settled(self, n: int) -> None:
        self._in_flight -= n
        if not self._in_flight:
            self._drained.set()

    async def _delete_sent(self, ids: list[int]) -> None:
        backoff = Backoff(cap=1.0)
        while True:
            try:
                async with self.db.transaction() as session:
                    await session.execute(DELETE_PUBLISHED, {"ids": ids})
                return
            except Exception as exc:
                if not is_transient(exc) or backoff.attempt >= 5:
                    # Rows left behind are swept and sent again: a duplicate, never a loss.
                    log.warning(
                        "could not delete %d published rows, the relay resends: %s", len(ids), exc
                    )
                    return
                await backoff.wait()
