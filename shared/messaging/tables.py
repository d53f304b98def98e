"""The inbox and outbox tables: the two halves of exactly-once between a database and Kafka.

Each service adds both tables to its own metadata (it owns its database). The inbox records
which messages a consumer has applied, in the same transaction as the state change; the outbox
holds events to publish, written in the same transaction as the state change that caused them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    MetaData,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY


@dataclass(frozen=True)
class MessagingTables:
    inbox: Table
    outbox: Table


def add_messaging_tables(metadata: MetaData) -> MessagingTables:
    inbox = Table(
        "inbox",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("message_id", String(255), primary_key=True),
        Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    # BRIN: rows arrive in applied_at order, so a block range index finds the old ones for the
    # retention purge at almost no cost per insert (a b-tree would add one entry per message).
    Index("ix_inbox_applied_at", inbox.c.applied_at, postgresql_using="brin")
    # One row per transaction that emitted events (per `add_to_outbox` call): the messages'
    # topics, keys and JSON payloads as arrays in order (shared/messaging/outbox.py).
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("topics", ARRAY(Text), nullable=False),
        Column("keys", ARRAY(Text), nullable=False),
        Column("payloads", ARRAY(Text), nullable=False),
        # each message's W3C traceparent (shared/tracing.py); NULL when none of them has one
        Column("traceparents", ARRAY(Text), nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    return MessagingTables(inbox=inbox, outbox=outbox)
