"""Kafka clients set up the way Jifen needs them: producers that wait for every in-sync
replica, clients that wait for a broker still starting, and topics created with their
dead-letter topics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.retry import Backoff
from shared.settings import JifenSettings

log = logging.getLogger(__name__)


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
