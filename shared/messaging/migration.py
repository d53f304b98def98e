"""Revisions of the inbox and outbox that every service's migrations share.

Each service owns its database and its own Alembic history; a revision that changes the
message tables calls one of these, so the change is written once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


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
