"""outbox: one row per transaction, its messages as arrays

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from shared.messaging.migration import outbox_holds_messages, outbox_holds_transactions

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    outbox_holds_transactions()


def downgrade() -> None:
    outbox_holds_messages()
