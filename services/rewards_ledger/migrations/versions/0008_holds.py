"""holds: points reserved at checkout (积分抵现), held amounts on accounts, lots and the journal

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

NOW = sa.text("now()")
ZERO = "0"


def upgrade() -> None:
    op.add_column("accounts", sa.Column("held", sa.BigInteger(), server_default=ZERO, nullable=False))
    op.create_check_constraint(
        "ck_accounts_held_in_balance", "accounts", "held >= 0 AND held <= balance"
    )
    op.add_column("lots", sa.Column("held", sa.BigInteger(), server_default=ZERO, nullable=False))
    op.create_check_constraint("ck_lots_held_in_remaining", "lots", "held >= 0 AND held <= remaining")
    op.add_column(
        "journal_entries",
        sa.Column("held_delta", sa.BigInteger(), server_default=ZERO, nullable=False),
    )
    op.drop_constraint("ck_journal_moves_something", "journal_entries", type_="check")
    op.create_check_constraint(
        "ck_journal_moves_something",
        "journal_entries",
        "amount <> 0 OR pending_delta <> 0 OR debt_delta <> 0 OR held_delta <> 0",
    )
    op.create_table(
        "holds",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("asset", sa.String(length=32), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("captured", sa.BigInteger(), server_default=ZERO, nullable=False),
        sa.Column("settle_key", sa.String(length=255), nullable=True),
        sa.Column("closed_by", sa.String(length=16), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("settle_entry_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("points > 0", name="ck_holds_points_positive"),
        sa.CheckConstraint(
            "status = 'captured' AND captured > 0 AND captured <= points "
            "OR status <> 'captured' AND captured = 0",
            name="ck_holds_captured_in_range",
        ),
        sa.CheckConstraint(
            "(status = 'open') = (closed_by IS NULL AND settle_entry_id IS NULL)",
            name="ck_holds_closed_once",
        ),
        sa.ForeignKeyConstraint(["entry_id"], ["journal_entries.id"]),
        sa.ForeignKeyConstraint(["settle_entry_id"], ["journal_entries.id"]),
        sa.ForeignKeyConstraint(
            ["user_id", "asset"],
            ["accounts.user_id", "accounts.asset"],
            name="fk_holds_account",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("uq_holds_key_asset", "holds", ["idempotency_key", "asset"], unique=True)
    op.create_index(
        "uq_holds_settle_key_asset",
        "holds",
        ["settle_key", "asset"],
        unique=True,
        postgresql_where=sa.text("settle_key IS NOT NULL"),
    )
    op.create_index(
        "ix_holds_due", "holds", ["expires_at"], postgresql_where=sa.text("status = 'open'")
    )
    op.create_index("ix_holds_account", "holds", ["user_id", "asset", "created_at"])
    op.create_table(
        "hold_lots",
        sa.Column("hold_id", sa.String(length=36), nullable=False),
        sa.Column("lot_id", sa.String(length=36), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("points > 0", name="ck_hold_lots_points_positive"),
        sa.ForeignKeyConstraint(["hold_id"], ["holds.id"]),
        sa.ForeignKeyConstraint(["lot_id"], ["lots.id"]),
        sa.PrimaryKeyConstraint("hold_id", "lot_id"),
    )
    op.create_index("ix_hold_lots_lot", "hold_lots", ["lot_id"])


def downgrade() -> None:
    """Holds are dropped with their journal entries: open holds give their points back (the
    balance still counts them), a capture stays as the debit it is."""
    op.drop_index("ix_hold_lots_lot", table_name="hold_lots")
    op.drop_table("hold_lots")
    op.drop_index("ix_holds_account", table_name="holds")
    op.drop_index("ix_holds_due", table_name="holds")
    op.drop_index("uq_holds_settle_key_asset", table_name="holds")
    op.drop_index("uq_holds_key_asset", table_name="holds")
    op.drop_table("holds")
    op.execute("DELETE FROM journal_entries WHERE kind IN ('hold', 'hold_void')")
    op.drop_constraint("ck_journal_moves_something", "journal_entries", type_="check")
    op.create_check_constraint(
        "ck_journal_moves_something",
        "journal_entries",
        "amount <> 0 OR pending_delta <> 0 OR debt_delta <> 0",
    )
    op.drop_column("journal_entries", "held_delta")
    op.drop_constraint("ck_lots_held_in_remaining", "lots", type_="check")
    op.drop_column("lots", "held")
    op.drop_constraint("ck_accounts_held_in_balance", "accounts", type_="check")
    op.drop_column("accounts", "held")
