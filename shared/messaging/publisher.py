"""Publishing right after commit: a transaction's outbox rows go out as soon as it commits."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy.ext.asyncio import AsyncSession

from shared import tracing
from shared.db import Database
from shared.failpoints import failpoint
from shared.messaging.outbox import DELETE_PUBLISHED, QueuedRow, queued_rows
from shared.metrics import OUTBOX_PUBLISHED
from shared.retry import Backoff, is_transient
from shared.settings import JifenSettings

log = logging.getLogger(__name__)


class OutboxRow(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> str | None: ...
    @property
    def payload(self) -> str: ...  # the JSON text as stored
    @property
    def traceparent(self) -> str | None: ...  # sent as the `traceparent` header


R = TypeVar("R", bound=OutboxRow)


@dataclass
class SentBatch(Generic[R]):
    """Rows handed to the producer as one record batch; `acked` resolves on the broker's ack
    of all of them (or fails for all of them)."""

    rows: list[R]
    acked: asyncio.Future[Any]


@functools.lru_cache(maxsize=65_536)
def _partition_of(key: bytes, partitions: int) -> int:
    # The producer's own partitioner (murmur2 of the key, as every Kafka client does), so a
    # key lands where `send` would put it; cached, since a user's key comes back often.
    return int(_PARTITIONER(key, list(range(partitions)), []))


_PARTITIONER = DefaultPartitioner()
# what a message without a trace is appended with: the builder only reads it (its own default
# is a shared empty list too; None would make it build a new one per message)
_NO_HEADERS: list[tuple[str, bytes]] = []


async def send_rows(
    producer: AIOKafkaProducer, rows: Sequence[R]
) -> tuple[list[SentBatch[R]], Exception | None]:
    """Hand outbox rows to the producer, one record batch per partition (a full batch starts
    another), instead of a send, a future and several loop turns per row (aiokafka's
    `send_batch`). Rows keep their order within each partition, so a key's events keep theirs.

    Returns the batches handed over and, if handing over failed part-way (the producer
    closed, its queue timed out), the error: the rows of no returned batch were not sent.

    A row's traceparent goes out as the message's `traceparent` header; with tracing on, in a
    publish span of its own (shared/tracing.py), ended on the batch's ack."""
    sent: list[SentBatch[R]] = []
    building: dict[tuple[str, int], tuple[Any, list[R]]] = {}
    spans: dict[tuple[str, int], list[Any]] = {}  # publish spans by batch (tracing on)
    partitions: dict[str, int] = {}
    traced = tracing.enabled()
    try:
        for row in rows:
            count = partitions.get(row.topic)
            if count is None:
                count = partitions[row.topic] = len(await producer.partitions_for(row.topic))
            key = row.key.encode("utf-8") if row.key else None
            where = (row.topic, _partition_of(key, count) if key else random.randrange(count))
            value = row.payload.encode("utf-8")
            span = None
            if traced:
                span, traceparent = tracing.sending(row.topic, row.traceparent)
            else:
                traceparent = row.traceparent
            headers = [(tracing.HEADER, traceparent.encode())] if traceparent else _NO_HEADERS
            builder, members = building.get(where, (None, []))
            if (
                builder is None
                or builder.append(timestamp=None, key=key, value=value, headers=headers) is None
            ):
                if builder is not None:  # full: send it and start the next
                    del building[where]
                    acked = await _submit(producer, builder, where)
                    tracing.end_on_ack(spans.pop(where, []), acked)
                    sent.append(SentBatch(members, acked))
                builder, members = producer.create_batch(), []
                if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    raise ValueError(f"a message to {row.topic} does not fit in a record batch")
                building[where] = (builder, members)
            members.append(row)
            if span is not None:
                spans.setdefault(where, []).append(span)
        while building:
            where, (builder, members) = building.popitem()
            acked = await _submit(producer, builder, where)
            tracing.end_on_ack(spans.pop(where, []), acked)
            sent.append(SentBatch(members, acked))
    except Exception as exc:
        for left in spans.values():  # never handed over
            tracing.end_on_ack(left, None)
        return sent, exc
    return sent, None


async def _submit(
    producer: AIOKafkaProducer, builder: Any, where: tuple[str, int]
) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = await producer.send_batch(builder, where[0], partition=where[1])
    return future


def count_published(service: str, via: str, topics: Iterable[str]) -> None:
    for topic, n in Counter(topics).items():
        OUTBOX_PUBLISHED.labels(service, topic, via).inc(n)


class OutboxPublisher:
    """Publishes the outbox messages of each transaction right after it commits, then deletes
    each row once every message in it is acknowledged.

    This takes the relay's poll and its locking read off every event's path. It is best effort
    by design: messages it cannot send (broker away, queue full, process killed) stay in their
    row and the relay sends the row once it is `outbox_sweep_after_ms` old. A row sent here
    whose delete is lost, or with one message not acknowledged, goes out again, whole, from
    the relay; downstream consumers absorb the repeats, as they do for the relay's own crash
    window.

    Two loops pipeline the work: the sender hands messages to the producer as they arrive, the
    deleter waits for their acks and deletes every fully acked row with one statement.
    """

    def __init__(self, settings: JifenSettings, db: Database, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.db = db
        self.producer = producer
        self._queue: list[QueuedRow] = []
        self._queued = asyncio.Event()
        self._sent: list[SentBatch[QueuedRow]] = []
        self._have_sent = asyncio.Event()
        self._in_flight = 0  # messages accepted and not yet deleted or given up
        # outbox row -> its messages not acknowledged yet; a row leaves when all are (it is
        # deleted) or when one fails (it is left to the relay)
        self._unacked: dict[int, int] = {}
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
        for row in rows:
            self._unacked[row.id] = self._unacked.get(row.id, 0) + 1
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
            sent, error = await send_rows(self.producer, rows)
            if error is not None:  # the relay sends whatever did not get handed over
                log.warning("publish on commit failed, left to the relay: %s", error)
                handed = {id(row) for batch in sent for row in batch.rows}
                for row in rows:
                    if id(row) not in handed:
                        self._unacked.pop(row.id, None)
                self._settled(len(rows) - len(handed))
            if sent:
                self._sent.extend(sent)
                self._have_sent.set()

    async def _delete_loop(self) -> None:
        while True:
            await self._have_sent.wait()
            self._have_sent.clear()
            batches, self._sent = self._sent, []
            taken = sum(len(batch.rows) for batch in batches)
            results = await asyncio.gather(
                *(batch.acked for batch in batches), return_exceptions=True
            )
            done, topics = self._acknowledge(batches, results)
            try:
                if done:
                    failpoint("publisher.after_send")
                    await self._delete_sent(done)
                count_published(self.settings.service_name, "commit", topics)
            finally:
                self._settled(taken)

    def _acknowledge(
        self, batches: list[SentBatch[QueuedRow]], results: list[Any]
    ) -> tuple[list[int], list[str]]:
        """The rows whose every message is now acknowledged, and the topics of the messages
        acknowledged. A row with a message the broker did not take is left to the relay."""
        done: list[int] = []
        topics: list[str] = []
        for batch, result in zip(batches, results, strict=True):
            if isinstance(result, BaseException):
                for row in batch.rows:
                    self._unacked.pop(row.id, None)
                continue
            for row in batch.rows:
                topics.append(row.topic)
                left = self._unacked.get(row.id)
                if left is None:
                    continue  # the row already failed: the relay sends it again, whole
                if left == 1:
                    del self._unacked[row.id]
                    done.append(row.id)
                else:
                    self._unacked[row.id] = left - 1
        return done, topics

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
