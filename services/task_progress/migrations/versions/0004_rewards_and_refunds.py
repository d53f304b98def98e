"""rules pay any asset, extra rewards and pending days; orders and refunds for clawbacks

Revision ID: 0004
Revises: 0003
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tasks", sa.Column("reward_type", sa.String(length=32), server_default="points", nullable=False)
    )
    op.add_column(
        "tasks",
        sa.Column(
            "extra_rewards",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
    )
    op.add_column("tasks", sa.Column("pending_days", sa.Integer(), nullable=True))
    op.add_column(
        "grants", sa.Column("asset", sa.String(length=32), server_default="points", nullable=False)
    )
    op.add_column("grants", sa.Column("available_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_grants_causation", "grants", ["causation_event_id"], unique=False)
    op.create_table(
        "orders",
        sa.Column("order_behavior_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("order_no", sa.String(length=128), nullable=False),
        sa.Column("paid_cents", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("order_behavior_id"),
    )
    op.create_table(
        "order_refunds",
        sa.Column("order_behavior_id", sa.String(length=36), nullable=False),
        sa.Column("refund_no", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint("amount_cents >= 0", name="ck_order_refunds_amount"),
        sa.PrimaryKeyConstraint("order_behavior_id", "refund_no"),
    )


def downgrade() -> None:
    op.drop_table("order_refunds")
    op.drop_table("orders")
    op.drop_index("ix_grants_causation", table_name="grants")
    op.drop_column("grants", "available_at")
    op.drop_column("grants", "asset")
    op.drop_column("tasks", "pending_days")
    op.drop_column("tasks", "extra_rewards")
    op.drop_column("tasks", "reward_type")
