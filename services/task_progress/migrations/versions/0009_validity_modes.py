"""validity modes: a rule's validity as {mode, n} (days, months_end, year_end)

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("validity", JSONB(), nullable=True))
    op.execute(
        "UPDATE tasks SET validity = jsonb_build_object('mode', 'days', 'n', points_validity_days) "
        "WHERE points_validity_days IS NOT NULL"
    )


def downgrade() -> None:
    """Back to days only: a rule valid to a month's or a year's end falls back to the asset's
    default validity."""
    op.drop_column("tasks", "validity")
