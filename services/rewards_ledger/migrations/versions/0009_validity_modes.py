"""validity modes: an asset's default validity as {mode, n} (days, months_end, year_end)

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

CHECK = "ck_assets_validity_only_if_expiring"


def upgrade() -> None:
    op.add_column("assets", sa.Column("default_validity", JSONB(), nullable=True))
    op.execute(
        "UPDATE assets SET default_validity = "
        "jsonb_build_object('mode', 'days', 'n', default_validity_days) "
        "WHERE default_validity_days IS NOT NULL"
    )
    op.drop_constraint(CHECK, "assets", type_="check")
    op.create_check_constraint(
        CHECK, "assets", "expires OR (default_validity_days IS NULL AND default_validity IS NULL)"
    )


def downgrade() -> None:
    """Back to days only: an asset valid to a month's or a year's end keeps points' default."""
    op.drop_constraint(CHECK, "assets", type_="check")
    op.drop_column("assets", "default_validity")
    op.create_check_constraint(CHECK, "assets", "expires OR default_validity_days IS NULL")
