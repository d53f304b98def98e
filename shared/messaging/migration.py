"""Revisions of the inbox and outbox that every service's migrations share.

Each service owns its database and its own Alembic history; a revision that changes the
message tables calls one of these, so the change is written once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


def outbox_deletes_sent_rows() -> None:
    """The outbox keeps only unsent rows: a row is deleted once the broker acked it, so the
    `published_at` mark, its two indexes and the purge of old marked rows go away."""
    op.execute("DELETE FROM outbox WHERE published_at IS NOT NULL")
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.drop_index("ix_outbox_published_at", table_name="outbox")
    op.drop_column("outbox", "published_at")


def outbox_marks_sent_rows() -> None:
    """Undo `outbox_deletes_sent_rows` (rows still there are the unsent ones)."""
    op.add_column("outbox", sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])
    op.create_index(
        "ix_outbox_unpublished", "outbox", ["id"], postgresql_where=sa.text("published_at IS NULL")
    )


def inbox_retention_index() -> None:
    """The index the retention purge finds old inbox rows by (BRIN: rows arrive in time order)."""
    op.create_index("ix_inbox_applied_at", "inbox", ["applied_at"], postgresql_using="brin")


def drop_inbox_retention_index() -> None:
    op.drop_index("ix_inbox_applied_at", table_name="inbox", postgresql_using="brin")


def outbox_holds_transactions() -> None:
    """One outbox row per transaction (per `add_to_outbox` call): its messages' topics, keys
    and JSON payloads as three arrays. Each unsent row becomes a row of one message."""
    for column in ("topics", "keys", "payloads"):
        op.add_column("outbox", sa.Column(column, postgresql.ARRAY(sa.Text()), nullable=True))
    op.execute(
        "UPDATE outbox SET topics = ARRAY[topic], keys = ARRAY[key], payloads = ARRAY[payload::text]"
    )
    for column in ("topics", "keys", "payloads"):
        op.alter_column("outbox", column, nullable=False)
    for column in ("topic", "key", "payload"):
        op.drop_column("outbox", column)


def outbox_holds_messages() -> None:
    """Undo `outbox_holds_transactions`: each message of each unsent row becomes a row again, in
    order (new ids, after the existing ones)."""
    op.add_column("outbox", sa.Column("topic", sa.String(200), nullable=True))
    op.add_column("outbox", sa.Column("key", sa.String(255), nullable=True))
    op.add_column("outbox", sa.Column("payload", postgresql.JSONB(), nullable=True))
    for column in ("topics", "keys", "payloads"):
        op.alter_column("outbox", column, nullable=True)
    op.execute(
        "INSERT INTO outbox (topic, key, payload, created_at) "
        "SELECT m.topic, m.key, CAST(m.payload AS jsonb), o.created_at FROM outbox o "
        "CROSS JOIN LATERAL unnest(o.topics, o.keys, o.payloads) WITH ORDINALITY "
        "AS m(topic, key, payload, n) WHERE o.topics IS NOT NULL ORDER BY o.id, m.n"
    )
    op.execute("DELETE FROM outbox WHERE topics IS NOT NULL")
    op.alter_column("outbox", "topic", nullable=False)
    op.alter_column("outbox", "payload", nullable=False)
    for column in ("topics", "keys", "payloads"):
        op.drop_column("outbox", column)


def outbox_carries_traces() -> None:
    """Each message's traceparent, in a fourth array (NULL when none has one). Adding a
    nullable column without a default rewrites nothing."""
    op.add_column("outbox", sa.Column("traceparents", postgresql.ARRAY(sa.Text()), nullable=True))


def outbox_drops_traces() -> None:
    op.drop_column("outbox", "traceparents")
