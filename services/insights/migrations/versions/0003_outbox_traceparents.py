"""outbox: each message's traceparent (tracing across hops)

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from shared.messaging.migration import outbox_carries_traces, outbox_drops_traces

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    outbox_carries_traces()


def downgrade() -> None:
    outbox_drops_traces()
