"""check-in rules and days, make-ups, rule versions, the behavior history of the dry run

Revision ID: 0005
Revises: 0004
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")
JSONB = postgresql.JSONB(astext_type=sa.Text())


def upgrade() -> None:
    op.add_column("tasks", sa.Column("ladder", JSONB, nullable=True))
    op.add_column("tasks", sa.Column("cycle_days", sa.Integer(), nullable=True))
    op.add_column(
        "tasks",
        sa.Column("after_cycle", sa.String(length=16), server_default="restart", nullable=False),
    )
    op.add_column("tasks", sa.Column("makeup", JSONB, nullable=True))
    op.add_column("tasks", sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    op.add_column(
        "grants", sa.Column("rule_version", sa.Integer(), server_default="1", nullable=False)
    )
    op.create_table(
        "task_versions",
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rule", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"]),
        sa.PrimaryKeyConstraint("task_id", "version"),
    )
    # Every rule that exists has had one version so far: what it is now.
    op.execute(
        "INSERT INTO task_versions (task_id, version, rule, created_at) "
        "SELECT id, 1, to_jsonb(t) - 'id' - 'name' - 'description' - 'created_at' "
        "- 'updated_at' - 'version', created_at FROM tasks t"
    )
    op.create_table(
        "checkins",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("streak", sa.Integer(), nullable=False),
        sa.Column("paid", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"]),
        sa.PrimaryKeyConstraint("user_id", "task_id", "day"),
    )
    op.create_table(
        "makeups",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("cost_points", sa.Integer(), nullable=False),
        sa.Column("result", JSONB, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"]),
        sa.PrimaryKeyConstraint("user_id", "task_id", "day"),
    )
    op.create_table(
        "behavior_history",
        sa.Column("behavior_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attributes", JSONB, server_default="{}", nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("behavior_id"),
    )
    op.create_index(
        "ix_behavior_history_action", "behavior_history", ["action", "occurred_at"]
    )
    op.create_index(
        "ix_behavior_history_received_at",
        "behavior_history",
        ["received_at"],
        postgresql_using="brin",
    )


def downgrade() -> None:
    op.drop_index("ix_behavior_history_received_at", table_name="behavior_history")
    op.drop_index("ix_behavior_history_action", table_name="behavior_history")
    op.drop_table("behavior_history")
    op.drop_table("makeups")
    op.drop_table("checkins")
    op.drop_table("task_versions")
    op.drop_column("grants", "rule_version")
    for column in ("version", "makeup", "after_cycle", "cycle_days", "ladder"):
        op.drop_column("tasks", column)
