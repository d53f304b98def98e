"""A consumer killed after its database commit but before its offset commit credits nothing twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiokafka import TopicPartition

from services.rewards_ledger.consumer import GrantHandler
from services.rewards_ledger.models import messaging
from services.rewards_ledger.settings import Settings
from shared.db import Database, create_engine, database_url
from shared.events import ClawbackCommand, GrantCommand, stable_id
from shared.messaging import ConsumerLoop, OutboxRelay, ensure_topics, make_producer
from shared.messaging.embedded_broker import group_admin
from tests.conftest import eventually, unique
from tests.integration.helpers import balance, entries, reconciliation

pytestmark = pytest.mark.integration


class Killed(BaseException):
    """Stands for the process dying: nothing after the DB commit runs."""


async def send_grants(producer, topic: str, user: str, numbers: range) -> None:
    """Grant n points for each n, as task_progress would."""
    for n in numbers:
        grant = GrantCommand(
            grant_id=stable_id(topic, n),
            user_id=user,
            points=n,
            task_id="t",
            period_key="lifetime",
            completion=n,
            causation_event_id=f"e{n}",
            occurred_at=datetime.now(UTC),
        )
        await producer.send_and_wait(topic, grant.model_dump_json().encode(), key=user.encode())


def grant_loop(
    settings: Settings, topic: str, db: Database, producer, group: str, **kw
) -> ConsumerLoop:
    return ConsumerLoop(
        GrantHandler(settings, topics=[topic]),
        settings=settings,
        db=db,
        producer=producer,
        inbox=messaging.inbox,
        group_id=group,
        **kw,
    )


async def test_a_consumer_killed_between_db_commit_and_offset_commit_credits_once(
    http, infra, producer
) -> None:
    ledger = http("rewards_ledger")
    topic, user = unique("test.grants"), unique("u")
    settings = Settings(
        database_url=infra.database_url, kafka_bootstrap=infra.kafka_bootstrap, consumer_poll_ms=100
    )
    await ensure_topics(infra.kafka_bootstrap, [topic, f"{topic}.dlq"], partitions=2)
    await send_grants(producer, topic, user, range(1, 11))

    db = Database(
        create_engine(database_url(infra.database_url, settings.database_name), pool_size=2)
    )
    kafka_producer = make_producer(settings)
    await kafka_producer.start()
    group = unique("crash-group")
    try:

        async def die_after_commit() -> None:
            raise Killed

        first = grant_loop(
            settings, topic, db, kafka_producer, group, after_db_commit=die_after_commit
        )
        with pytest.raises(Killed):
            await first.run()
        credited_before_restart = await balance(ledger, user)
        assert credited_before_restart > 0  # the first batch did reach the database

        # A new consumer in the same group re-reads from the last committed offset (none yet).
        second = grant_loop(settings, topic, db, kafka_producer, group)
        task = asyncio.create_task(second.run())

        async def all_credited() -> None:
            assert await balance(ledger, user) == sum(range(1, 11))

        await eventually(all_credited, timeout=30)
        second.stop()
        await task
        assert await balance(ledger, user) == 55
        assert len(await entries(ledger, user)) == 10
        # Drain the ledger.events these credits wrote, as the service's relay would.
        await OutboxRelay(settings, db, kafka_producer).publish_once()
    finally:
        await kafka_producer.stop()
        await db.dispose()
    report = await reconciliation(ledger)
    assert report["ok"], report["violations"]


async def test_offsets_committed_on_an_interval_still_all_reach_the_broker(
    http, infra, producer
) -> None:
    """With a long commit interval the offsets wait, but idling and stopping hand them over,
    so a consumer that takes over later starts after everything already applied."""
    ledger = http("rewards_ledger")
    topic, user = unique("test.grants"), unique("u")
    settings = Settings(
        database_url=infra.database_url,
        kafka_bootstrap=infra.kafka_bootstrap,
        consumer_poll_ms=100,
        consumer_commit_interval_ms=10_000,
    )
    await ensure_topics(infra.kafka_bootstrap, [topic, f"{topic}.dlq"], partitions=2)

    await send_grants(producer, topic, user, range(1, 6))
    db = Database(
        create_engine(database_url(infra.database_url, settings.database_name), pool_size=2)
    )
    kafka_producer = make_producer(settings)
    await kafka_producer.start()
    group = unique("interval-group")
    loop = grant_loop(settings, topic, db, kafka_producer, group)
    task = asyncio.create_task(loop.run())
    try:

        async def credited(points: int) -> None:
            assert await balance(ledger, user) == points

        await eventually(lambda: credited(15), timeout=30)  # its first commit goes at once
        await send_grants(
            producer, topic, user, range(6, 11)
        )  # these are applied well within the interval
        await eventually(lambda: credited(55), timeout=30)
        partitions = [TopicPartition(topic, p) for p in (0, 1)]

        async def committed_to_the_end() -> None:
            # the group's offsets as the broker has them, read by a client that never joins
            async with group_admin(infra.kafka_bootstrap, group) as (_, reader):
                ends = await reader.end_offsets(partitions)
                for tp in partitions:
                    assert await reader.committed(tp) == (ends[tp] or None)

        # Idle, the loop commits what it has applied without waiting out the interval.
        await eventually(committed_to_the_end, timeout=10)
    finally:
        loop.stop()
        await task
        await OutboxRelay(settings, db, kafka_producer).publish_once()
        await kafka_producer.stop()
        await db.dispose()
    assert len(await entries(ledger, user)) == 10


async def test_grants_and_clawbacks_delivered_twice_move_points_once(http, infra, producer) -> None:
    """The grant consumer keeps no inbox: the lot's key (from the grant id) and the clawback's
    target decide. Every command is published twice, the repeat both in the same fetch and
    after a restart of the consumer that re-reads everything."""
    ledger = http("rewards_ledger")
    topic, user = unique("test.grants"), unique("u")
    settings = Settings(
        database_url=infra.database_url, kafka_bootstrap=infra.kafka_bootstrap, consumer_poll_ms=100
    )
    await ensure_topics(infra.kafka_bootstrap, [topic, f"{topic}.dlq"], partitions=2)
    await send_grants(producer, topic, user, range(1, 6))
    await send_grants(producer, topic, user, range(1, 6))  # 1..5 again, same grant ids
    clawback = ClawbackCommand(
        clawback_id=stable_id(topic, "refund"),
        grant_id=stable_id(topic, 5),
        user_id=user,
        clawed_total=3,
        reference="refund-1",
        occurred_at=datetime.now(UTC),
    )
    for _ in range(2):
        await producer.send_and_wait(topic, clawback.model_dump_json().encode(), key=user.encode())

    db = Database(
        create_engine(database_url(infra.database_url, settings.database_name), pool_size=2)
    )
    kafka_producer = make_producer(settings)
    await kafka_producer.start()
    try:
        for round_ in range(2):  # the second group re-reads the topic from its start
            loop = grant_loop(settings, topic, db, kafka_producer, unique(f"twice-{round_}"))
            task = asyncio.create_task(loop.run())

            async def settled() -> None:
                assert await balance(ledger, user) == 15 - 3
                assert len(await entries(ledger, user)) == 6  # 5 credits, 1 clawback

            await eventually(settled, timeout=30)
            await asyncio.sleep(1)  # a wrongly applied repeat would show by now
            await settled()
            loop.stop()
            await task
        await OutboxRelay(settings, db, kafka_producer).publish_once()
    finally:
        await kafka_producer.stop()
        await db.dispose()
    report = await reconciliation(ledger)
    assert report["ok"], report["violations"]
