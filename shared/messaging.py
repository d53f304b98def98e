"""Inbox and outbox tables: the two halves of exactly-once between a database and Kafka.

Each service adds both tables to its own metadata (it owns its database). The inbox records
which messages a consumer has applied, in the same transaction as the state change; the outbox
holds events to publish, written in the same transaction as the state change that caused them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession


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
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(255), nullable=True),
        Column("payload", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True), nullable=True),
    )
    Index(
        "ix_outbox_unpublished",
        outbox.c.id,
        postgresql_where=outbox.c.published_at.is_(None),
    )
    Index("ix_outbox_published_at", outbox.c.published_at)
    return MessagingTables(inbox=inbox, outbox=outbox)


@dataclass(frozen=True)
class OutgoingEvent:
    topic: str
    key: str | None
    payload: dict[str, Any]


async def claim_inbox(
    session: AsyncSession, inbox: Table, consumer: str, message_ids: Sequence[str]
) -> set[str]:
    """Record message ids as applied; return those not applied before (the ones to apply now).

    A concurrent transaction inserting the same id blocks here until it commits or rolls back,
    so two consumers (say, during a rebalance) never both apply one message.
    """
    if not message_ids:
        return set()
    unique = list(dict.fromkeys(message_ids))
    stmt = (
        pg_insert(inbox)
        .values([{"consumer": consumer, "message_id": mid} for mid in unique])
        .on_conflict_do_nothing()
        .returning(inbox.c.message_id)
    )
    result = await session.execute(stmt)
    return set(result.scalars().all())


async def add_to_outbox(
    session: AsyncSession, outbox: Table, events: Iterable[OutgoingEvent]
) -> int:
    rows = [{"topic": e.topic, "key": e.key, "payload": e.payload} for e in events]
    if rows:
        await session.execute(insert(outbox), rows)
    return len(rows)


async def outbox_backlog(session: AsyncSession, outbox: Table) -> int:
    result = await session.execute(
        select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
    )
    return int(result.scalar_one())


LOCK_UNPUBLISHED = text(
    "SELECT id, topic, key, payload FROM outbox WHERE published_at IS NULL "
    "ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
)
MARK_PUBLISHED = text("UPDATE outbox SET published_at = now() WHERE id = ANY(:ids)")
PURGE_PUBLISHED = text(
    "DELETE FROM outbox WHERE published_at < now() - make_interval(hours => :hours)"
)
