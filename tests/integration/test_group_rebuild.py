"""Rebuilding a consumer group the broker no longer completes joins for: the group is deleted
and recreated, and its members resume from its committed offsets, not from the start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import select

from chaos.runner import reset_to_earliest
from shared.db import Database, ensure_database
from shared.messaging import ensure_topics
from shared.messaging.embedded_broker import rebuild_group, rebuild_lock
from tests.conftest import unique
from tests.integration.helpers import open_database

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(infra) -> AsyncIterator[Database]:
    name = "jifen_group_rebuild_test"
    await ensure_database(infra.database_url, name)
    async with open_database(infra.database_url, name, pool_size=2) as database:
        yield database


@pytest.fixture
async def topic(infra) -> str:
    """A topic with 2 partitions holding records 0..5 on each."""
    name = unique("rebuild")
    await ensure_topics(infra.kafka_bootstrap, [name], partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    try:
        for i in range(6):
            for partition in (0, 1):
                await producer.send_and_wait(name, str(i).encode(), partition=partition)
    finally:
        await producer.stop()
    return name


def member(infra, group: str, topic: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10_000,
        heartbeat_interval_ms=500,
    )


async def first_offsets(consumer: AIOKafkaConsumer) -> dict[int, int]:
    """The offset of the first record each partition delivers."""
    first: dict[int, int] = {}
    async with asyncio.timeout(30):
        while len(first) < 2:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                first.setdefault(tp.partition, records[0].offset)
    return first


async def test_a_rebuilt_group_keeps_its_committed_offsets(infra, db, topic) -> None:
    group = unique("group")
    old = member(infra, group, topic)
    await old.start()
    try:
        assert await first_offsets(old) == {0: 0, 1: 0}
        await old.commit({TopicPartition(topic, 0): 2, TopicPartition(topic, 1): 5})
        # The member is still in the group, as the stuck joiner is when a rebuild runs.
        assert await rebuild_group(infra.kafka_bootstrap, db, group, [topic]) is True
    finally:
        await old.stop()

    new = member(infra, group, topic)
    async with asyncio.timeout(30):
        await new.start()
    try:
        # Resumed where the group had got to, not from the start (auto_offset_reset=earliest
        # would replay everything had the offsets gone with the group).
        assert await first_offsets(new) == {0: 2, 1: 5}
    finally:
        await new.stop()


async def test_only_one_replica_rebuilds_a_group_at_a_time(infra, db, topic) -> None:
    group = unique("group")
    setter = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await setter.start()
    try:
        setter.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        await setter.commit({TopicPartition(topic, 0): 4, TopicPartition(topic, 1): 1})
        async with db.transaction() as session:  # another replica mid-rebuild holds the lock
            assert await session.scalar(select(rebuild_lock(group))) is True
            assert await rebuild_group(infra.kafka_bootstrap, db, group, [topic]) is False
        assert [await setter.committed(TopicPartition(topic, p)) for p in (0, 1)] == [4, 1]
    finally:
        await setter.stop()


async def test_the_chaos_replay_moves_a_group_back_to_the_start(infra, topic) -> None:
    group = unique("group")
    old = member(infra, group, topic)
    await old.start()
    try:
        await first_offsets(old)
        await old.commit({TopicPartition(topic, 0): 3, TopicPartition(topic, 1): 6})
    finally:
        await old.stop()
    await reset_to_earliest(infra.kafka_bootstrap, group, (topic,))
    new = member(infra, group, topic)
    async with asyncio.timeout(30):
        await new.start()
    try:
        assert [await new.committed(TopicPartition(topic, p)) for p in (0, 1)] == [0, 0]
        assert await first_offsets(new) == {0: 0, 1: 0}
    finally:
        await new.stop()
