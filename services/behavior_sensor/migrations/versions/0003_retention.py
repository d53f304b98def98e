"""retention: indexes for purging the inbox, received behaviors and counters

Revision ID: 0003
Revises: 0002
"""
from collections.abc import Sequence

from alembic import op
from shared.messaging.migration import drop_inbox_retention_index, inbox_retention_index

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    inbox_retention_index()
    op.create_index(
        "ix_received_events_received_at",
        "received_events",
        ["received_at"],
        postgresql_using="brin",
    )
    op.create_index(
        "ix_farming_counters_window_start",
        "farming_counters",
        ["window_start"],
        postgresql_using="brin",
    )


def downgrade() -> None:
    op.drop_index("ix_farming_counters_window_start", table_name="farming_counters")
    op.drop_index("ix_received_events_received_at", table_name="received_events")
    drop_inbox_retention_index()
