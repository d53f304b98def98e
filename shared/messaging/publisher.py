"""Publishing right after commit: a transaction's outbox rows go out as soon as it commits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession

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


async def send_row(producer: AIOKafkaProducer, row: OutboxRow) -> asyncio.Future[Any]:
    """Hand one outbox row to the producer; the returned future resolves on the broker's ack."""
    future: asyncio.Future[Any] = await producer.send(
        row.topic, row.payload.encode("utf-8"), key=row.key.encode("utf-8") if row.key else None
    )
    return future


def count_published(service: str, via: str, topics: Iterable[str]) -> None:
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
                    count_published(
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
