"""How far a consumer group is behind, read from outside the group (the console's dashboard,
the dev stack's drain, bench and chaos)."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, TopicPartition


async def consumer_lag(kafka_bootstrap: str, group: str, topics: tuple[str, ...]) -> int:
    """Messages on `topics` past the group's committed offsets (without joining the group)."""
    return sum((await consumer_lag_by_topic(kafka_bootstrap, group, topics)).values())


async def consumer_lag_by_topic(
    kafka_bootstrap: str, group: str, topics: tuple[str, ...]
) -> dict[str, int]:
    """The group's lag on each of `topics`."""
    lag = dict.fromkeys(topics, 0)
    for tp, behind in (await consumer_lag_by_partition(kafka_bootstrap, group, topics)).items():
        lag[tp.topic] += behind
    return lag


async def consumer_lag_by_partition(
    kafka_bootstrap: str, group: str, topics: tuple[str, ...]
) -> dict[TopicPartition, int]:
    """The group's lag on each partition of `topics` (the console exports it per partition
    and shows it per topic).

    The end of each partition is found by reading its last batch: the embedded broker reports
    the end offset of a multi-record batch as if the batch held one record.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="latest",
    )
    await consumer.start()
    try:
        await consumer.topics()  # refresh metadata
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return {}
        reported = await consumer.end_offsets(partitions)
        committed = {tp: (await consumer.committed(tp)) or 0 for tp in partitions}
        consumer.assign(partitions)
        ends = dict(reported)
        for tp in partitions:
            consumer.seek(tp, max(0, reported[tp] - 1))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=200)
            for tp, records in fetched.items():
                ends[tp] = max(ends[tp], records[-1].offset + 1)
            if not fetched:
                break
        return {tp: max(0, ends[tp] - committed[tp]) for tp in partitions}
    finally:
        await consumer.stop()
