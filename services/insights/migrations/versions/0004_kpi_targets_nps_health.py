"""KPI targets stored and audited, NPS responses, redemption latencies, health signals

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

# The seed's targets at this revision (the code's defaults may move on; this row set is what
# an upgraded database starts with).
SEED_TARGETS = {
    "dau_growth": 0.30,
    "task_completion_rate": 0.60,
    "push_open_rate": 0.15,
    "redemption_rate": 0.20,
    "redeemer_rate": 0.20,
    "earn_to_redeem_days": 30.0,
    "expiry_rate": 0.15,
    "nps": 50.0,
}


def upgrade() -> None:
    op.create_table(
        "nps_responses",
        sa.Column("behavior_id", sa.String(length=160), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("behavior_id"),
    )
    op.create_table(
        "redemption_latencies",
        sa.Column("redemption_id", sa.String(length=64), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("redemption_id"),
    )
    op.create_index(
        "ix_redemption_latencies_completed_at",
        "redemption_latencies",
        ["completed_at"],
        unique=False,
    )
    targets = op.create_table(
        "kpi_targets",
        sa.Column("kpi", sa.String(length=32), nullable=False),
        sa.Column("target", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("kpi"),
    )
    op.bulk_insert(
        targets,
        [{"kpi": k, "target": v, "updated_by": "seed"} for k, v in SEED_TARGETS.items()],
    )
    op.create_table(
        "kpi_target_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kpi", sa.String(length=32), nullable=False),
        sa.Column("old_target", sa.Float(), nullable=False),
        sa.Column("new_target", sa.Float(), nullable=False),
        sa.Column("changed_by", sa.String(length=64), nullable=False),
        sa.Column("operator", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "changed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_kpi_target_changes_kpi", "kpi_target_changes", ["kpi", "id"], unique=False)
    op.create_table(
        "health_signals",
        sa.Column("signal", sa.String(length=64), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("tried_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("signal"),
    )


def downgrade() -> None:
    op.drop_table("health_signals")
    op.drop_index("ix_kpi_target_changes_kpi", table_name="kpi_target_changes")
    op.drop_table("kpi_target_changes")
    op.drop_table("kpi_targets")
    op.drop_index("ix_redemption_latencies_completed_at", table_name="redemption_latencies")
    op.drop_table("redemption_latencies")
    op.drop_table("nps_responses")
