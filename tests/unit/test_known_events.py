"""The inbox ids under which engagement, the notifier and insights record the platform's
events. They are stored: a replayed topic is recognized by them, so they must never change
(an event would be applied twice). This test pins each one."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from shared.events import (
    BEHAVIOR_EVENTS,
    ENGAGEMENT_EVENTS,
    EXCHANGE_EVENTS,
    EXPERIMENT_EXPOSURES,
    LEDGER_EVENTS,
    NOTIFY_EVENTS,
    PROGRESS_EVENTS,
    REWARDS_GRANTS,
)
from shared.messaging import PoisonMessage
from shared.messaging.known import KNOWN_EVENTS, read_event

AT = "2026-12-01T09:00:00+08:00"
SAMPLES: dict[str, tuple[dict[str, Any], str]] = {
    BEHAVIOR_EVENTS: (
        {
            "behavior_id": "b1",
            "event_id": "e1",
            "source": "app",
            "user_id": "u1",
            "action": "like",
            "occurred_at": AT,
            "received_at": AT,
        },
        "behavior:b1",
    ),
    LEDGER_EVENTS: (
        {
            "type": "credited",
            "entry_id": 42,
            "user_id": "u1",
            "points": 5,
            "balance_after": 5,
            "idempotency_key": "k",
            "occurred_at": AT,
        },
        "ledger:42",
    ),
    PROGRESS_EVENTS: (
        {
            "type": "task.completed",
            "event_id": "p1",
            "user_id": "u1",
            "task_id": "t1",
            "occurred_at": AT,
        },
        "progress:p1",
    ),
    EXCHANGE_EVENTS: (
        {
            "type": "redemption.completed",
            "redemption_id": "r1",
            "user_id": "u1",
            "item_id": "i1",
            "item_type": "virtual",
            "quantity": 1,
            "points": 10,
            "status": "completed",
            "occurred_at": AT,
        },
        "exchange:r1:redemption.completed",
    ),
    ENGAGEMENT_EVENTS: (
        {"type": "badge.awarded", "event_id": "g1", "occurred_at": AT},
        "engagement:g1",
    ),
    NOTIFY_EVENTS: (
        {
            "type": "sent",
            "event_id": "n1",
            "notification_id": "nn",
            "user_id": "u1",
            "category": "reminders",
            "trigger": "points_expiring",
            "occurred_at": AT,
        },
        "notify:n1",
    ),
    EXPERIMENT_EXPOSURES: (
        {
            "event_id": "x1",
            "experiment": "expiry_reminder_copy",
            "variant": "deadline",
            "user_id": "u1",
            "source": "notifier",
            "occurred_at": AT,
        },
        "exposure:x1",
    ),
}


def record(topic: str, value: Any) -> Any:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return SimpleNamespace(topic=topic, value=raw)


def test_every_known_topic_has_a_pinned_sample() -> None:
    assert set(SAMPLES) == set(KNOWN_EVENTS)


@pytest.mark.parametrize("topic", sorted(SAMPLES))
def test_each_event_is_recorded_under_its_fixed_inbox_id(topic: str) -> None:
    payload, inbox_id = SAMPLES[topic]
    inbound = read_event(record(topic, payload), "test", [topic])
    assert inbound.message_id == inbox_id
    assert isinstance(inbound.value, KNOWN_EVENTS[topic][0])


def test_an_invalid_event_or_a_topic_the_reader_does_not_take_is_poison() -> None:
    payload, _ = SAMPLES[LEDGER_EVENTS]
    with pytest.raises(PoisonMessage, match="invalid ledger event"):
        read_event(record(LEDGER_EVENTS, {**payload, "entry_id": "x"}), "test", [LEDGER_EVENTS])
    with pytest.raises(PoisonMessage, match="does not read"):
        read_event(record(LEDGER_EVENTS, payload), "test", [BEHAVIOR_EVENTS])
    with pytest.raises(PoisonMessage, match="does not read"):
        read_event(record(REWARDS_GRANTS, payload), "test", [REWARDS_GRANTS])
