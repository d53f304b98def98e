"""The AsyncAPI 3.0 description of every Jifen topic, generated from the event models.

    python -m services.asyncapi > docs/asyncapi.yaml

Payload schemas come from the pydantic models the services publish and parse with (so they
cannot drift: `tests/unit/test_asyncapi.py` regenerates the document and compares, and
validates it against the official AsyncAPI 3.0.0 JSON schema). Each topic is a channel with
its dead-letter channel; each producing service has a `send` operation and each consumer
group a `receive` operation (its group id in the Kafka binding).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.behavior_sensor.adapters import OrderMessage
from services.suite import CONSUMER_GROUPS
from shared import events as ev

REF = "#/components/schemas/{model}"


class DeadLetter(BaseModel):
    """A message a consumer could not apply (`<topic>.dlq`), with the original kept whole."""

    error: str
    consumer: str
    topic: str
    partition: int
    offset: int
    key: str | None
    original: str | None
    original_base64: str
    failed_at: str
    traceparent: str | None = None  # the original's trace, when it had one


class DivertedBehavior(ev.BehaviorEvent):
    """A behavior anti-farming held back (behavior.diverted), with the rule that held it."""

    reason: str


@dataclass(frozen=True)
class Topic:
    address: str
    messages: tuple[type[BaseModel], ...]
    key: str
    producers: tuple[str, ...]
    summary: str


TOPICS: tuple[Topic, ...] = (
    Topic(
        ev.UPSTREAM_EVENTS,
        (ev.BehaviorEnvelope,),
        "any (the sensor keys what it publishes by user)",
        ("upstream systems",),
        "Behavior from upstream systems in Jifen's envelope: one object or a list.",
    ),
    Topic(
        ev.UPSTREAM_ORDERS,
        (OrderMessage,),
        "any",
        ("the order system",),
        "The order system's own messages (paid, refunded, partially refunded), read by the "
        "order adapter.",
    ),
    Topic(
        ev.BEHAVIOR_EVENTS,
        (ev.BehaviorEvent,),
        "user_id",
        ("behavior_sensor",),
        "Validated, de-duplicated, enriched behaviors that passed anti-farming.",
    ),
    Topic(
        ev.BEHAVIOR_DIVERTED,
        (DivertedBehavior,),
        "user_id",
        ("behavior_sensor",),
        "Behaviors anti-farming held back (released or rejected by operations).",
    ),
    Topic(
        ev.REWARDS_GRANTS,
        (ev.GrantCommand, ev.ClawbackCommand),
        "user_id",
        ("task_progress", "engagement"),
        "Commands to the ledger: a grant per completion (or prize, or badge), a clawback "
        "per refunded order.",
    ),
    Topic(
        ev.LEDGER_EVENTS,
        (ev.LedgerEvent,),
        "user_id",
        ("rewards_ledger",),
        "Every movement of an asset on an account.",
    ),
    Topic(
        ev.EXCHANGE_EVENTS,
        (ev.ExchangeEvent,),
        "user_id",
        ("exchange",),
        "Redemptions changing state.",
    ),
    Topic(
        ev.PROGRESS_EVENTS,
        (ev.ProgressEvent,),
        "user_id",
        ("task_progress",),
        "Task completions, check-ins and broken streaks.",
    ),
    Topic(
        ev.ENGAGEMENT_EVENTS,
        (ev.EngagementEvent,),
        "user_id (board code for a closed leaderboard)",
        ("engagement",),
        "Badges awarded, tiers changed, leaderboard periods closed.",
    ),
    Topic(
        ev.NOTIFY_EVENTS,
        (ev.NotifyEvent,),
        "user_id",
        ("notifier",),
        "Notifications sent and opened.",
    ),
    Topic(
        ev.EXPERIMENT_EXPOSURES,
        (ev.ExperimentExposure,),
        "user_id",
        ("notifier", "insights"),
        "A user was shown a variant of an experiment (once per experiment and user).",
    ),
)


def channel_id(address: str) -> str:
    head, *rest = address.replace("-", ".").split(".")
    return head + "".join(part.capitalize() for part in rest)


def _schemas() -> dict[str, Any]:
    models = {m for t in TOPICS for m in t.messages} | {DeadLetter}
    _, top = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template=REF,
    )
    return dict(sorted(top.get("$defs", {}).items()))


def _headers() -> dict[str, Any]:
    """Every message Jifen produces may carry its trace (shared/tracing.py). A new object each
    time: YAML would write a shared one as anchors."""
    return {
        "type": "object",
        "properties": {
            "traceparent": {
                "type": "string",
                "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                "description": "W3C trace context of the work that produced the message "
                "(present when that work was part of a trace); a consumer continues it",
            }
        },
    }


def _message(model: type[BaseModel], key: str, summary: str) -> dict[str, Any]:
    return {
        "name": model.__name__,
        "title": model.__name__,
        "summary": (model.__doc__ or summary).strip().splitlines()[0],
        "contentType": "application/json",
        "headers": _headers(),
        "payload": {"$ref": REF.format(model=model.__name__)},
        "bindings": {"kafka": {"key": {"type": "string", "description": key}}},
    }


def document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    consumers: dict[str, list[str]] = {}
    for group, addresses in CONSUMER_GROUPS.items():
        for address in addresses:
            consumers.setdefault(address, []).append(group)
    for topic in TOPICS:
        cid = channel_id(topic.address)
        names = [m.__name__ for m in topic.messages]
        for model in topic.messages:
            messages[model.__name__] = _message(model, topic.key, topic.summary)
        channels[cid] = {
            "address": topic.address,
            "title": topic.address,
            "summary": topic.summary,
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
        }
        dlq = channel_id(ev.dlq_topic(topic.address))
        channels[dlq] = {
            "address": ev.dlq_topic(topic.address),
            "title": ev.dlq_topic(topic.address),
            "summary": f"Messages of {topic.address} a consumer could not apply, with why.",
            "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
        }
        refs = [{"$ref": f"#/channels/{cid}/messages/{n}"} for n in names]
        for producer in topic.producers:
            if " " in producer:  # an upstream system, not a Jifen service
                continue
            operations[f"{producer}.send.{cid}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{cid}"},
                "summary": f"{producer} publishes {topic.address} (through its outbox).",
                "messages": refs,
            }
        for group in consumers.get(topic.address, []):
            operations[f"{group}.receive.{cid}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{cid}"},
                "summary": f"Consumer group {group}: exactly once through its inbox.",
                "messages": refs,
                "bindings": {"kafka": {"groupId": {"type": "string", "enum": [group]}}},
            }
            operations[f"{group}.send.{dlq}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{dlq}"},
                "summary": f"Consumer group {group} dead-letters what it cannot apply.",
                "messages": [{"$ref": f"#/channels/{dlq}/messages/DeadLetter"}],
            }
    messages["DeadLetter"] = _message(DeadLetter, "the original message's key", "")
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Jifen events",
            "version": "0.1.0",
            "description": "Every topic of the Jifen points platform: who publishes it, who "
            "consumes it (exactly once, through an inbox), and its payload. Generated from the "
            "event models by `python -m services.asyncapi`; do not edit by hand.",
        },
        "servers": {
            "production": {
                "host": "kafka:9092",
                "protocol": "kafka",
                "description": "Apache Kafka (KRaft); acks=all, idempotent producers",
            },
            "development": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "the embedded Kafka-compatible broker of `make run`",
            },
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": dict(sorted(operations.items())),
        "components": {"messages": dict(sorted(messages.items())), "schemas": _schemas()},
    }


def render() -> str:
    return yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
