"""Consuming Kafka exactly once into a database: the handler protocol, the loop, offsets
committed after the database commit, dead letters, and group health."""

from shared.messaging.consumer.group_health import JoinFailures, StallWatch, join_group
from shared.messaging.consumer.handler import BatchHandler, Inbound, PoisonMessage, parse_model
from shared.messaging.consumer.loop import ConsumerLoop
from shared.messaging.consumer.top_up import TopUp

__all__ = [
    "BatchHandler",
    "ConsumerLoop",
    "Inbound",
    "JoinFailures",
    "PoisonMessage",
    "StallWatch",
    "TopUp",
    "join_group",
    "parse_model",
]
