"""The two numbers operations are paged on: how far each consumer group is behind, per
partition (exported by the console, which reads it for its dashboard anyway), and what the
ledger's and the exchange's periodic reconciliation found."""

from __future__ import annotations

import time

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from services.exchange.repository.reconciliation import RECONCILIATION_CHECKS as EXCHANGE_CHECKS
from services.rewards_ledger import service as ledger
from services.rewards_ledger.repository.reports import RECONCILIATION_CHECKS as LEDGER_CHECKS
from services.suite import CONSUMER_GROUPS
from shared.messaging import ensure_topics
from shared.messaging.lag import consumer_lag_by_partition
from shared.reconciliation import ReconciliationWorker
from tests.conftest import eventually, unique

pytestmark = pytest.mark.integration


async def _samples(url: str, name: str) -> list[tuple[dict[str, str], float]]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        page = await client.get("/metrics")
    assert page.status_code == 200, page.text
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(page.text)
        for sample in family.samples
        if sample.name == name
    ]


async def test_lag_is_counted_per_partition_from_the_committed_offsets(infra) -> None:
    topic, group = unique("lagged"), unique("lag_group")
    await ensure_topics(infra.kafka_bootstrap, [topic], partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, b"x%d" % i, partition=0)
        for i in range(3):
            await producer.send_and_wait(topic, b"y%d" % i, partition=1)
    finally:
        await producer.stop()
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)

    assert await consumer_lag_by_partition(infra.kafka_bootstrap, group, (topic,)) == {
        p0: 5,
        p1: 3,
    }
    member = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await member.start()
    try:
        member.assign([p0, p1])
        await member.commit({p0: OffsetAndMetadata(4, ""), p1: OffsetAndMetadata(3, "")})
    finally:
        await member.stop()
    assert await consumer_lag_by_partition(infra.kafka_bootstrap, group, (topic,)) == {
        p0: 1,
        p1: 0,
    }


async def test_the_console_exports_every_groups_lag_per_partition(stack) -> None:
    async def every_group_reported() -> bool:
        found = await _samples(stack.url("console"), "jifen_consumer_lag")
        return {labels["group"] for labels, _ in found} == set(CONSUMER_GROUPS)

    await eventually(every_group_reported, 60)
    found = await _samples(stack.url("console"), "jifen_consumer_lag")
    for labels, value in found:
        assert labels["topic"] in CONSUMER_GROUPS[labels["group"]], labels
        assert int(labels["partition"]) >= 0 and value >= 0


@pytest.mark.parametrize(
    ("service", "checks"),
    [
        ("rewards_ledger", list(LEDGER_CHECKS)),
        ("exchange", [*EXCHANGE_CHECKS, "nothing_unfinished_for_long"]),
    ],
)
async def test_the_periodic_reconciliation_reports_each_check(stack, service, checks) -> None:
    """The worker runs its checks at start-up: every check is exported (0 on a sound suite)
    with the time of the run, before anyone opens the console."""
    violations = await _samples(stack.url(service), "jifen_reconciliation_violations")
    mine = {labels["check"]: value for labels, value in violations if labels["service"] == service}
    assert mine == dict.fromkeys(checks, 0.0)
    (last_run,) = [
        value
        for labels, value in await _samples(
            stack.url(service), "jifen_reconciliation_last_run_timestamp_seconds"
        )
        if labels["service"] == service
    ]
    assert time.time() - 3600 < last_run <= time.time()


async def test_a_broken_invariant_shows_in_the_violations_gauge(ledger_db) -> None:
    """A lot whose points no longer add up (as a bad manual fix would leave it) is counted on
    the next run, and the count goes back to 0 once it is repaired."""
    user = unique("broken")
    async with ledger_db.transaction() as session:
        await ledger.credit(
            session, [ledger.NewCredit(user, 50, unique("g"), "adjustment", "t", None)]
        )
    worker = ReconciliationWorker(
        "ledger_under_test", ledger_db, ledger.reconcile, interval_s=600, backoff_cap_s=1
    )

    def gauge(check: str) -> float | None:
        return REGISTRY.get_sample_value(
            "jifen_reconciliation_violations",
            {"service": "ledger_under_test", "check": check},
        )

    await worker.step()
    assert gauge("lots_account_for_their_points") == 0

    async with ledger_db.transaction() as session:
        await session.execute(
            text("UPDATE lots SET remaining = remaining - 7 WHERE user_id = :u"), {"u": user}
        )
    await worker.step()
    assert gauge("lots_account_for_their_points") == 1
    assert gauge("balance_matches_lots") == 1  # the balance no longer matches its lots either

    async with ledger_db.transaction() as session:
        await session.execute(
            text("UPDATE lots SET remaining = remaining + 7 WHERE user_id = :u"), {"u": user}
        )
    await worker.step()
    assert gauge("lots_account_for_their_points") == 0
