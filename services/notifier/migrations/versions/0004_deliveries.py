"""deliveries: what became of each notification on each device

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("notification_id", sa.String(length=36), nullable=False),
        sa.Column("device", sa.String(length=16), nullable=False),
        sa.Column("platform", sa.String(length=8), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("notification_id", "device"),
    )
    op.create_index(
        "ix_deliveries_updated_at",
        "deliveries",
        ["updated_at"],
        unique=False,
        postgresql_using="brin",
    )
    # No backfill: notifications sent before keep their attempt log (GET /v1/notifications/{id}).


def downgrade() -> None:
    op.drop_index("ix_deliveries_updated_at", table_name="deliveries", postgresql_using="brin")
    op.drop_table("deliveries")
