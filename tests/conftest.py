"""Session fixtures: a real PostgreSQL and a real Kafka-protocol broker, then the running suite."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.devstack import (
    EmbeddedBroker,
    Stack,
    free_port,
    port_open,
    start_embedded_postgres,
    stop_embedded_postgres,
)
from services.suite import SERVICES
from shared.settings import DEV_ADMIN_TOKEN, DEV_INGEST_KEY
from tests.faults import FaultProxy
from tests.push_fakes import PushFakes

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
INGEST = {"X-Api-Key": DEV_INGEST_KEY}
# An ingest key that may publish for OTHER_SOURCE only (tests/integration/test_authz_matrix.py)
OTHER_SOURCE = "authz_other_source"
OTHER_SOURCE_KEY = "authz-other-source-ingest-key"
T = TypeVar("T")


@dataclass
class Infra:
    database_url: str
    kafka_bootstrap: str
    data_dir: Path


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    data_dir = tmp_path_factory.mktemp("jifen")
    database_url = os.environ.get("JIFEN_TEST_DATABASE_URL") or start_embedded_postgres(
        data_dir / "postgres"
    )
    broker = EmbeddedBroker(port=free_port())
    bootstrap = broker.start(log_path=data_dir / "broker.log")
    yield Infra(database_url, bootstrap, data_dir)
    broker.stop()
    stop_embedded_postgres()


def _free_base_port() -> int:
    for _ in range(50):
        # below Linux's ephemeral ports (32768-60999): an outgoing connection of another
        # process could hold one of ours between the check and the bind
        base = random.randrange(20000, 32700, 10)
        if not any(port_open("127.0.0.1", base + i) for i in range(0, 8)):  # console: base
            return base
    raise RuntimeError("no free port range")


# Settings the suite runs with in tests: a tight anti-farming limit on a few actions so the
# limit can be observed, and a fast expiry sweep.
TEST_ENV = {
    "JIFEN_ENV": "test",
    "JIFEN_SEED_DEMO": "false",
    "JIFEN_FARMING_ACTION_LIMITS": json.dumps(
        {"farm_test_http": 5, "farm_test_kafka": 5, "farm_test_release": 5, "farm_test_console": 2}
    ),
    "JIFEN_EXPIRY_SWEEP_INTERVAL_S": "1",
    # the dev key (any source) that most tests use, and one key held to a single source so
    # the authorization matrix can present a valid key for another source
    "JIFEN_INGEST_KEYS": json.dumps({DEV_INGEST_KEY: ["*"], OTHER_SOURCE_KEY: [OTHER_SOURCE]}),
    "JIFEN_KAFKA_TOPIC_PARTITIONS": "4",
    "JIFEN_LOG_JSON": "true",
    # exchange: short ledger timeouts and deadlines so outages resolve within a test
    "JIFEN_LEDGER_TIMEOUT_S": "2",
    "JIFEN_RECOVERY_INTERVAL_S": "0.5",
    "JIFEN_PENDING_DEADLINE_S": "8",
    # quick options see a task rule created a moment ago
    "JIFEN_TASK_RULES_REFRESH_S": "1",
    # the suite's tests generate load no real caller would: the limits are exercised on a
    # replica of their own (tests/integration/test_rate_limits.py)
    "JIFEN_RATE_LIMIT_KEY_PER_S": "0",
    "JIFEN_RATE_LIMIT_USER_PER_S": "0",
    "JIFEN_RATE_LIMIT_IP_PER_S": "0",
    # notifier: quick polls and retries, a short lease (the kill -9 test waits it out), and
    # campaigns and batches small enough that a kill lands mid-campaign
    "JIFEN_DISPATCH_POLL_S": "0.2",
    "JIFEN_DISPATCH_LEASE_S": "8",
    "JIFEN_DISPATCH_BATCH": "100",
    "JIFEN_RETRY_BASE_S": "0.5",
    "JIFEN_PROVIDER_TIMEOUT_S": "3",
    "JIFEN_CAMPAIGN_CHUNK": "100",
    "JIFEN_CAMPAIGN_POLL_S": "0.2",
}


@pytest.fixture(scope="session")
def base_port() -> int:
    return _free_base_port()


@pytest.fixture(scope="session")
def ledger_link(base_port: int) -> Iterator[FaultProxy]:
    """The exchange reaches the ledger through this proxy, so tests can break the link."""
    proxy = FaultProxy(free_port(), "127.0.0.1", base_port + SERVICES["rewards_ledger"]).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def push_fakes(infra: Infra) -> Iterator[PushFakes]:
    """Fake APNs (HTTP/2 over TLS), FCM (OAuth + HTTP v1) and webhook servers the notifier
    in the running suite sends to."""
    fakes = PushFakes(infra.data_dir / "push").start()
    yield fakes
    fakes.stop()


@pytest.fixture(scope="session")
def stack(
    infra: Infra, base_port: int, ledger_link: FaultProxy, push_fakes: PushFakes
) -> Iterator[Stack]:
    stack = Stack(
        database_url=infra.database_url,
        kafka_bootstrap=infra.kafka_bootstrap,
        base_port=base_port,
        env={**TEST_ENV, **push_fakes.env(), "JIFEN_LEDGER_URL": ledger_link.url},
        log_dir=infra.data_dir / "logs",
    )
    try:
        stack.start(timeout=180)
    except Exception:
        stack.stop()
        for log in sorted((infra.data_dir / "logs").glob("*.log")):
            print(f"==== {log.name}\n{log.read_text()[-4000:]}")
        raise
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
async def http(stack: Stack) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    clients = {
        name: httpx.AsyncClient(base_url=stack.url(name), timeout=30) for name in stack.services
    }
    yield lambda name: clients[name]
    for client in clients.values():
        await client.aclose()


@pytest.fixture(scope="session")
async def producer(infra: Infra) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    yield producer
    await producer.stop()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def eventually(
    check: Callable[[], Awaitable[T]], timeout: float = 30, interval: float = 0.2
) -> T:
    """Retry an async assertion until it passes or the timeout runs out (then re-raise)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(interval)


def envelope(
    user_id: str,
    action: str,
    occurred_at: str,
    event_id: str | None = None,
    source: str = "app",
    **attributes: Any,
) -> dict[str, Any]:
    return {
        "event_id": event_id or uuid.uuid4().hex,
        "source": source,
        "user_id": user_id,
        "action": action,
        "occurred_at": occurred_at,
        "attributes": attributes,
    }


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fuzzer writes junk through admin routes of the shared suite (tasks on random
    actions, badges, campaigns): its tests run after every other test, in their own order."""
    items.sort(key=lambda item: item.get_closest_marker("fuzz") is not None)
