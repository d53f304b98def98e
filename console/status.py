"""The suite's health as the dashboard shows it: both reconciliations, the ledger's
liability, and per consumer group and topic the lag and the dead letters.

Reconciliation scans every account and the lag needs the broker, so a background task reads
them every `console_status_interval_s` and pages show the last reading (with its time); an
operator can ask for a fresh one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

from console.metrics import CONSUMER_LAG
from console.services import Reply, Services
from services.suite import CONSUMER_GROUPS
from shared.messaging.lag import consumer_lag_by_partition

log = logging.getLogger(__name__)


@dataclass
class TopicState:
    group: str
    topic: str
    lag: int | None
    dead_letters: int | None


@dataclass
class Reading:
    ledger: Reply | None = None
    exchange: Reply | None = None
    liability: Reply | None = None
    kpis: Reply | None = None  # insights' summary against the targets, when insights runs
    trend: Reply | None = None  # insights' daily KPIs of the last 14 days
    topics: list[TopicState] = field(default_factory=list)
    broker_error: str | None = None
    read_at: float | None = None


async def _end_offsets(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Messages ever written to each topic (sum of partition end offsets)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        ends = await consumer.end_offsets(partitions) if partitions else {}
        totals = dict.fromkeys(topics, 0)
        for tp, end in ends.items():
            totals[tp.topic] += end
        return totals
    finally:
        await consumer.stop()


class StatusBoard:
    def __init__(self, services: Services, bootstrap: str, interval_s: float) -> None:
        self.services = services
        self.bootstrap = bootstrap
        self.interval_s = interval_s
        self.reading = Reading()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> Reading:
        async with self._lock:
            calls = {
                "ledger": self.services.get("rewards_ledger", "/v1/reconciliation"),
                "exchange": self.services.get("exchange", "/v1/reconciliation"),
                "liability": self.services.get("rewards_ledger", "/v1/reports/liability"),
            }
            if self.services.available("insights"):
                today = date.today()
                calls["kpis"] = self.services.get("insights", "/v1/kpis/summary")
                calls["trend"] = self.services.get(
                    "insights",
                    "/v1/kpis",
                    **{"from": (today - timedelta(days=13)).isoformat(), "to": today.isoformat()},
                )
            replies = await self.services.gather(**calls)
            topics, broker_error = await self._topics()
            self.reading = Reading(
                ledger=replies["ledger"],
                exchange=replies["exchange"],
                liability=replies["liability"],
                kpis=replies.get("kpis"),
                trend=replies.get("trend"),
                topics=topics,
                broker_error=broker_error,
                read_at=time.time(),
            )
            return self.reading

    async def _topics(self) -> tuple[list[TopicState], str | None]:
        groups = list(CONSUMER_GROUPS.items())
        names = sorted({t for _, topics in groups for t in topics})
        try:
            dead, *lags = await asyncio.wait_for(
                asyncio.gather(
                    _end_offsets(self.bootstrap, [f"{t}.dlq" for t in names]),
                    *(consumer_lag_by_partition(self.bootstrap, g, topics) for g, topics in groups),
                ),
                15,
            )
        except Exception as exc:  # the broker away: the dashboard says so
            log.warning("cannot read consumer lag", extra={"error": str(exc)})
            # no reading is not a flat line: the lag alerts see the series go (lag unknown)
            CONSUMER_LAG.clear()
            return [], str(exc) or type(exc).__name__
        states = []
        for (group, topics), partitions in zip(groups, lags, strict=True):
            by_topic = dict.fromkeys(topics, 0)
            for tp, behind in partitions.items():
                CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(behind)
                by_topic[tp.topic] += behind
            states += [TopicState(group, t, by_topic[t], dead.get(f"{t}.dlq")) for t in topics]
        return states, None

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("status refresh failed")
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="console-status")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
