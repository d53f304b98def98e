"""Received behaviors (the de-duplication record) and anti-farming counters."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from shared.messaging import Purge, add_messaging_tables

metadata = MetaData()
messaging = add_messaging_tables(metadata)

received_events = Table(
    "received_events",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("source", String(64), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("attributes", JSONB, nullable=False, server_default="{}"),
    Column("channel", String(16), nullable=False),  # http | kafka topic name
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # received -> published | diverted
    Column("status", String(16), nullable=False, server_default="received"),
    Column("status_reason", Text, nullable=True),
    Column("enrichment", JSONB, nullable=True),
    Column("processed_at", DateTime(timezone=True), nullable=True),
    # the trace the behavior came in with, continued when the processor publishes it
    Column("traceparent", Text, nullable=True),
    UniqueConstraint("source", "event_id", name="uq_received_events_source_event_id"),
)
Index("ix_received_pending", received_events.c.id, postgresql_where=text("status = 'received'"))
Index(
    "ix_received_diverted",
    received_events.c.user_id,
    received_events.c.id,
    postgresql_where=text("status = 'diverted'"),
)

farming_counters = Table(
    "farming_counters",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("action", String(64), primary_key=True),
    Column("window_start", DateTime(timezone=True), primary_key=True),
    Column("count", Integer, nullable=False, server_default="0"),
)
# BRIN: both tables are written in time order, so these find the rows past the retention
# (shared/messaging/retention.py) at almost no cost per insert.
Index("ix_received_events_received_at", received_events.c.received_at, postgresql_using="brin")
Index("ix_farming_counters_window_start", farming_counters.c.window_start, postgresql_using="brin")

# Forgotten after JIFEN_DEDUPE_RETENTION_HOURS: behaviors already processed (an upstream
# resending an event_id older than that is taken as new) and counters of windows that old.
PURGES = (
    Purge("received_events", "received_at < :cutoff AND status <> 'received'"),
    Purge("farming_counters", "window_start < :cutoff"),
)
