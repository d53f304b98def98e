"""completed redemptions by item and age: the quick options' exchange_count of the last 7 days

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_redemptions_item_completed",
        "redemptions",
        ["item_id", "created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'completed'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_redemptions_item_completed",
        table_name="redemptions",
        postgresql_where=sa.text("status = 'completed'"),
    )
