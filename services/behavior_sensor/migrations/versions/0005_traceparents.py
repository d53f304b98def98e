"""traceparents: the outbox's messages and the received behaviors the processor publishes later

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.messaging.migration import outbox_carries_traces, outbox_drops_traces

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    outbox_carries_traces()
    op.add_column("received_events", sa.Column("traceparent", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("received_events", "traceparent")
    outbox_drops_traces()
