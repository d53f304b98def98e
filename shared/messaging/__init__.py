"""Messaging between a service's database and Kafka, exactly once.

The public surface (import from here, or from the module named):
- tables: `add_messaging_tables` / `MessagingTables` (each service's inbox and outbox),
  `migration` (revisions of those tables every service shares);
- writes inside a unit of work: `claim_inbox`, `add_to_outbox` with `OutgoingEvent`;
- sending: `OutboxPublisher` (right after commit), `OutboxRelay` (the sweep for what that
  missed), Kafka client set-up (`make_producer`, `ensure_topics`, `start_with_retry`);
- consuming: `consumer` (`BatchHandler`, `Inbound`, `PoisonMessage`, `parse_model`,
  `ConsumerLoop`);
- `retention` (purging inbox rows past the dedupe window);
- `embedded_broker`: workarounds for the embedded broker, kept in one place.
"""

from shared.messaging.clients import ensure_topics, make_producer, start_with_retry
from shared.messaging.consumer import (
    BatchHandler,
    ConsumerLoop,
    Inbound,
    PoisonMessage,
    parse_model,
)
from shared.messaging.inbox import claim_inbox
from shared.messaging.outbox import OutgoingEvent, add_to_outbox, queued_rows
from shared.messaging.publisher import OutboxPublisher
from shared.messaging.relay import OutboxRelay
from shared.messaging.retention import Purge, RetentionSweeper, inbox_purge
from shared.messaging.tables import MessagingTables, add_messaging_tables

__all__ = [
    "BatchHandler",
    "ConsumerLoop",
    "Inbound",
    "MessagingTables",
    "OutboxPublisher",
    "OutboxRelay",
    "OutgoingEvent",
    "PoisonMessage",
    "Purge",
    "RetentionSweeper",
    "add_messaging_tables",
    "add_to_outbox",
    "claim_inbox",
    "ensure_topics",
    "inbox_purge",
    "make_producer",
    "parse_model",
    "queued_rows",
    "start_with_retry",
]
