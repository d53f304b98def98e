"""inbox: an index for the retention purge

Revision ID: 0003
Revises: 0002
"""
from collections.abc import Sequence

from shared.messaging.migration import drop_inbox_retention_index, inbox_retention_index

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    inbox_retention_index()


def downgrade() -> None:
    drop_inbox_retention_index()
