"""The outbox's two senders: the publisher right after each commit, and the relay's sweep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import MetaData, text

from shared.db import Database, ensure_database
from shared.messaging import (
    OutboxPublisher,
    OutboxRelay,
    OutgoingEvent,
    add_messaging_tables,
    add_to_outbox,
    ensure_topics,
    make_producer,
)
from shared.messaging.outbox import COUNT_UNSENT
from shared.settings import JifenSettings
from tests.conftest import eventually, unique
from tests.integration.helpers import open_database, read_topic

pytestmark = pytest.mark.integration

metadata = MetaData()
tables = add_messaging_tables(metadata)


class Abort(Exception):
    pass


@pytest.fixture
async def db(infra) -> AsyncIterator[Database]:
    name = "jifen_outbox_test"
    await ensure_database(infra.database_url, name)
    async with open_database(infra.database_url, name, pool_size=2) as database:
        async with database.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        yield database


def _settings(infra, **overrides: Any) -> JifenSettings:
    return JifenSettings(
        service_name="outbox-test", kafka_bootstrap=infra.kafka_bootstrap, **overrides
    )


async def _write(db: Database, topic: str, numbers: range) -> None:
    async with db.transaction() as session:
        await add_to_outbox(
            session, tables.outbox, [OutgoingEvent(topic, f"k{n}", {"n": n}) for n in numbers]
        )


async def _unpublished(db: Database) -> int:
    """Messages still in the outbox."""
    async with db.transaction() as session:
        return int((await session.execute(text(COUNT_UNSENT))).scalar_one())


async def _rows(db: Database) -> int:
    async with db.transaction() as session:
        return int((await session.execute(text("SELECT count(*) FROM outbox"))).scalar_one())


async def _read(infra, topic: str, expected: int) -> list[int]:
    """The numbers published to `topic`, with anything beyond `expected` that shows up."""
    messages = await read_topic(infra.kafka_bootstrap, topic, expected, then_wait_ms=500)
    return sorted(m["n"] for m in messages)


async def test_a_commit_publishes_its_events_at_once_and_a_rollback_publishes_nothing(
    infra, db
) -> None:
    settings = _settings(infra)
    topic = unique("test.outbox")
    await ensure_topics(infra.kafka_bootstrap, [topic], partitions=2)
    producer = make_producer(settings)
    await producer.start()
    publisher = OutboxPublisher(settings, db, producer)
    db.commit_listeners.append(publisher.on_commit)
    publisher.start()
    try:
        await _write(db, topic, range(3))
        with pytest.raises(Abort):
            async with db.transaction() as session:
                await add_to_outbox(session, tables.outbox, [OutgoingEvent(topic, "k", {"n": 99})])
                raise Abort
        # No relay runs here: only the publisher can have sent these.
        assert await _read(infra, topic, 3) == [0, 1, 2]

        async def all_deleted_once_sent() -> None:
            assert await _unpublished(db) == 0

        await eventually(all_deleted_once_sent, timeout=10)
    finally:
        await publisher.close()
        db.commit_listeners.clear()
        await producer.stop()


async def test_rows_no_publisher_sent_are_swept_by_the_relay_once_old_enough(infra, db) -> None:
    """A process killed right after its commit leaves its rows; the relay sends them later."""
    settings = _settings(infra, outbox_sweep_after_ms=1500)
    topic = unique("test.outbox")
    await ensure_topics(infra.kafka_bootstrap, [topic], partitions=2)
    producer = make_producer(settings)
    await producer.start()
    relay = OutboxRelay(settings, db, producer)
    try:
        await relay.publish_once()  # rows other tests' aborted publishers may have left
        await _write(db, topic, range(10, 14))
        assert (await _rows(db), await _unpublished(db)) == (1, 4)  # one row per transaction
        assert await relay.step() == 0  # young: the publisher's

        def backlog() -> float | None:
            return REGISTRY.get_sample_value("jifen_outbox_backlog", {"service": "outbox-test"})

        async def swept() -> None:
            assert await relay.step() == 4

        await eventually(swept, timeout=10)
        assert backlog() == 4  # counted by the sweep that sent them: overdue rows show
        assert await _read(infra, topic, 4) == [10, 11, 12, 13]
        assert await _unpublished(db) == 0
        assert await relay.step() == 0
        assert backlog() == 0

        await _write(db, topic, range(20, 22))
        relay.stop()  # on shutdown the relay sends everything, however young
        assert await relay.publish_once(relay.min_age_s()) == 2
    finally:
        await producer.stop()


async def test_a_sweep_that_finds_a_full_batch_reports_the_whole_backlog(infra, db) -> None:
    """The backlog gauge is what the sweep took, counted in full once a batch is full."""
    settings = _settings(infra, relay_batch_size=3)
    topic = unique("test.outbox")
    await ensure_topics(infra.kafka_bootstrap, [topic], partitions=2)
    producer = make_producer(settings)
    await producer.start()
    relay = OutboxRelay(settings, db, producer)

    def backlog() -> float | None:
        return REGISTRY.get_sample_value("jifen_outbox_backlog", {"service": "outbox-test"})

    try:
        while await relay.publish_once():  # rows other tests' aborted publishers may have left
            pass
        for n in range(30, 35):  # five transactions: five rows, the batch size counts rows
            await _write(db, topic, range(n, n + 1))
        await _write(db, topic, range(35, 38))  # a sixth with three messages
        assert await relay.publish_once(0, report_backlog=True) == 3
        assert backlog() == 8  # the batch was full: the rest were counted too (messages)
        assert await relay.publish_once(0, report_backlog=True) == 5
        assert backlog() == 5  # full again (3 rows): all that is left was counted
        assert await relay.publish_once(0, report_backlog=True) == 0
        assert backlog() == 0
        assert await _read(infra, topic, 8) == list(range(30, 38))
        assert await _unpublished(db) == 0
    finally:
        await producer.stop()
