"""A behavior's trace goes through every hop on the real broker, with the suite's default
settings (tracing off: traceparents forwarded, nothing recorded): posted over HTTP with a
`traceparent`, its behavior, progress, grant and ledger messages all carry that trace id in
their Kafka headers; one sent on upstream.events with the header likewise. Spans with
tracing on are checked in process (tests/unit/test_tracing.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from shared.events import BEHAVIOR_EVENTS, LEDGER_EVENTS, PROGRESS_EVENTS, REWARDS_GRANTS
from tests.conftest import INGEST, envelope, eventually, unique
from tests.integration.helpers import create_task, wait_for_balance

pytestmark = pytest.mark.integration

CHAIN = (BEHAVIOR_EVENTS, PROGRESS_EVENTS, REWARDS_GRANTS, LEDGER_EVENTS)


def traceparent() -> tuple[str, str]:
    trace_id = uuid.uuid4().hex
    return trace_id, f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"


async def traces_of(bootstrap: str, topic: str, user: str) -> list[str | None]:
    """The trace id in the `traceparent` header of each message of `topic` keyed by `user`
    (None for one without the header), once there is at least one."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[str | None] = []
    try:

        async def arrived() -> None:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for r in records:
                    if r.key == user.encode():
                        headers = dict(r.headers)
                        value = headers.get("traceparent")
                        found.append(value.decode()[3:35] if value else None)
            assert found, f"nothing for {user} on {topic}"

        await eventually(arrived, 30)
    finally:
        await consumer.stop()
    return found


async def assert_chain_carries(bootstrap: str, user: str, trace_id: str) -> None:
    for topic in CHAIN:
        found = await traces_of(bootstrap, topic, user)
        assert set(found) == {trace_id}, (topic, found)


async def test_a_behavior_posted_with_a_traceparent_reaches_ledger_events_in_its_trace(
    http, infra
) -> None:
    sensor, tasks, ledger = http("behavior_sensor"), http("task_progress"), http("rewards_ledger")
    user, action = unique("traced"), unique("trace").lower()
    await create_task(tasks, action=action, reward_points=7, period="day", max_per_period=5)
    trace_id, header = traceparent()
    at = datetime.now(UTC).isoformat()
    posted = await sensor.post(
        "/v1/events", json=envelope(user, action, at), headers={**INGEST, "traceparent": header}
    )
    assert posted.status_code == 202, posted.text
    await wait_for_balance(ledger, user, 7)
    await assert_chain_carries(infra.kafka_bootstrap, user, trace_id)

    # an error answer names the request by the same id
    refused = await sensor.post(
        "/v1/events", json={"nonsense": True}, headers={**INGEST, "traceparent": header}
    )
    assert refused.status_code == 422 and refused.json()["request_id"] == trace_id


async def test_a_behavior_from_kafka_intake_keeps_its_trace(http, infra, producer) -> None:
    tasks, ledger = http("task_progress"), http("rewards_ledger")
    user, action = unique("traced_kafka"), unique("trace_k").lower()
    await create_task(tasks, action=action, reward_points=5, period="day", max_per_period=5)
    trace_id, header = traceparent()
    event = envelope(user, action, datetime.now(UTC).isoformat())
    await producer.send_and_wait(
        "upstream.events",
        json.dumps(event).encode(),
        key=user.encode(),
        headers=[("traceparent", header.encode())],
    )
    await wait_for_balance(ledger, user, 5)
    await assert_chain_carries(infra.kafka_bootstrap, user, trace_id)


async def test_a_behavior_without_a_traceparent_goes_through_without_one(http, infra) -> None:
    sensor, tasks, ledger = http("behavior_sensor"), http("task_progress"), http("rewards_ledger")
    user, action = unique("untraced"), unique("plain").lower()
    await create_task(tasks, action=action, reward_points=3, period="day", max_per_period=5)
    body: dict[str, Any] = envelope(user, action, datetime.now(UTC).isoformat())
    assert (await sensor.post("/v1/events", json=body, headers=INGEST)).status_code == 202
    await wait_for_balance(ledger, user, 3)
    assert await traces_of(infra.kafka_bootstrap, LEDGER_EVENTS, user) == [None]
