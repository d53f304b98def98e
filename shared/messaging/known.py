"""The platform's own topics, read the same way by every service that consumes several of
them (engagement, notifier, insights): each topic's event model, and the inbox id an event
is recorded under.

The inbox ids are stored: a service that replays a topic recognizes what it has applied by
them. They must not change (an event would be applied a second time), and a new consumer
of these topics takes them from here rather than spelling its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from typing import Any

from aiokafka import ConsumerRecord
from pydantic import BaseModel

from shared.events import (
    BEHAVIOR_EVENTS,
    ENGAGEMENT_EVENTS,
    EXCHANGE_EVENTS,
    EXPERIMENT_EXPOSURES,
    LEDGER_EVENTS,
    NOTIFY_EVENTS,
    PROGRESS_EVENTS,
    BehaviorEvent,
    EngagementEvent,
    ExchangeEvent,
    ExperimentExposure,
    LedgerEvent,
    NotifyEvent,
    ProgressEvent,
)
from shared.messaging.consumer.handler import Inbound, PoisonMessage, parse_model

Known = tuple[type[BaseModel], str, Callable[[Any], str]]
KNOWN_EVENTS: dict[str, Known] = {
    BEHAVIOR_EVENTS: (BehaviorEvent, "behavior event", lambda e: f"behavior:{e.behavior_id}"),
    LEDGER_EVENTS: (LedgerEvent, "ledger event", lambda e: f"ledger:{e.entry_id}"),
    PROGRESS_EVENTS: (ProgressEvent, "progress event", lambda e: f"progress:{e.event_id}"),
    # a redemption publishes one event per step, each its own
    EXCHANGE_EVENTS: (
        ExchangeEvent,
        "exchange event",
        lambda e: f"exchange:{e.redemption_id}:{e.type}",
    ),
    ENGAGEMENT_EVENTS: (EngagementEvent, "engagement event", lambda e: f"engagement:{e.event_id}"),
    NOTIFY_EVENTS: (NotifyEvent, "notify event", lambda e: f"notify:{e.event_id}"),
    EXPERIMENT_EXPOSURES: (
        ExperimentExposure,
        "experiment exposure",
        lambda e: f"exposure:{e.event_id}",
    ),
}


def read_event(record: ConsumerRecord, reader: str, topics: Collection[str]) -> Inbound[BaseModel]:
    """The record's event and its inbox id. Poison when it does not validate, or when its
    topic is not one of `topics`, those `reader` (the consuming service) subscribes to."""
    known = KNOWN_EVENTS.get(record.topic)
    if known is None or record.topic not in topics:
        raise PoisonMessage(f"{reader} does not read {record.topic}")
    model, what, inbox_id = known
    event = parse_model(record, model, what)
    return Inbound(inbox_id(event), event)


class ByType(defaultdict[type, list[Any]]):
    """A batch's values grouped by their type, each group in the batch's order; a type the
    batch did not hold is an empty list."""

    def __init__(self, items: Iterable[Inbound[Any]]) -> None:
        super().__init__(list)
        for item in items:
            self[type(item.value)].append(item.value)
