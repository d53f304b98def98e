"""inbox: an index for the retention purge

Revision ID: 0004
Revises: 0003
"""
from collections.abc import Sequence

from shared.messaging.migration import drop_inbox_retention_index, inbox_retention_index

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    inbox_retention_index()


def downgrade() -> None:
    drop_inbox_retention_index()
