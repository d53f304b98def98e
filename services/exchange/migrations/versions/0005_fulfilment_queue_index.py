"""the shipping queue's index: physical redemptions by fulfilment step and age

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_redemptions_fulfilment",
        "redemptions",
        ["fulfilment_status", "created_at", "id"],
        unique=False,
        postgresql_where=sa.text("fulfilment_status IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_redemptions_fulfilment",
        table_name="redemptions",
        postgresql_where=sa.text("fulfilment_status IS NOT NULL"),
    )
