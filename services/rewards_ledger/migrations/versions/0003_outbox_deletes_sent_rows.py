"""outbox: sent rows are deleted instead of marked

Revision ID: 0003
Revises: 0002
"""
from collections.abc import Sequence

from shared.messaging.migration import outbox_deletes_sent_rows, outbox_marks_sent_rows

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    outbox_deletes_sent_rows()


def downgrade() -> None:
    outbox_marks_sent_rows()
