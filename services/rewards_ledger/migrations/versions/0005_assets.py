"""assets: accounts, lots, journal and voids per (user, asset); pending, debt, clawbacks,
extensions

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

NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "assets",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("spendable", sa.Boolean(), nullable=False),
        sa.Column("expires", sa.Boolean(), nullable=False),
        sa.Column("default_validity_days", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "expires OR default_validity_days IS NULL", name="ck_assets_validity_only_if_expiring"
        ),
        sa.PrimaryKeyConstraint("code"),
    )
    # Built in. points' validity comes from the service setting while its row says NULL.
    op.execute(
        "INSERT INTO assets (code, name, spendable, expires, default_validity_days) VALUES "
        "('points', '积分 points', true, true, NULL), ('growth', '成长值 growth', false, false, NULL)"
    )

    op.drop_constraint("lots_user_id_fkey", "lots", type_="foreignkey")
    op.drop_constraint("journal_entries_user_id_fkey", "journal_entries", type_="foreignkey")

    op.add_column(
        "accounts",
        sa.Column("asset", sa.String(length=32), server_default="points", nullable=False),
    )
    op.add_column(
        "accounts", sa.Column("pending", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column("accounts", sa.Column("debt", sa.BigInteger(), server_default="0", nullable=False))
    op.create_check_constraint("ck_accounts_pending_not_negative", "accounts", "pending >= 0")
    op.create_check_constraint("ck_accounts_debt_not_negative", "accounts", "debt >= 0")
    op.drop_constraint("accounts_pkey", "accounts", type_="primary")
    op.create_primary_key("accounts_pkey", "accounts", ["user_id", "asset"])
    op.create_foreign_key("fk_accounts_asset", "accounts", "assets", ["asset"], ["code"])

    op.add_column(
        "lots", sa.Column("asset", sa.String(length=32), server_default="points", nullable=False)
    )
    op.add_column("lots", sa.Column("available_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_index("ix_lots_spendable", table_name="lots")
    op.create_index(
        "ix_lots_spendable",
        "lots",
        ["user_id", "asset", "expires_at"],
        postgresql_where=sa.text("status = 'active' AND remaining > 0"),
    )
    op.create_index(
        "ix_lots_pending",
        "lots",
        ["available_at"],
        postgresql_where=sa.text("status = 'pending' AND remaining > 0"),
    )
    op.create_foreign_key(
        "fk_lots_account", "lots", "accounts", ["user_id", "asset"], ["user_id", "asset"]
    )

    op.add_column(
        "journal_entries",
        sa.Column("asset", sa.String(length=32), server_default="points", nullable=False),
    )
    op.add_column(
        "journal_entries",
        sa.Column("pending_delta", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column(
        "journal_entries",
        sa.Column("debt_delta", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.drop_constraint("ck_journal_amount_not_zero", "journal_entries", type_="check")
    op.create_check_constraint(
        "ck_journal_moves_something",
        "journal_entries",
        "amount <> 0 OR pending_delta <> 0 OR debt_delta <> 0",
    )
    op.drop_constraint(
        "journal_entries_idempotency_key_key", "journal_entries", type_="unique"
    )
    op.create_index(
        "uq_journal_key_asset", "journal_entries", ["idempotency_key", "asset"], unique=True
    )
    op.create_index(
        "ix_journal_created_at", "journal_entries", ["created_at"], postgresql_using="brin"
    )
    op.create_foreign_key(
        "fk_journal_entries_account",
        "journal_entries",
        "accounts",
        ["user_id", "asset"],
        ["user_id", "asset"],
    )

    op.add_column(
        "debit_voids",
        sa.Column("asset", sa.String(length=32), server_default="points", nullable=False),
    )
    op.drop_constraint("debit_voids_pkey", "debit_voids", type_="primary")
    op.create_primary_key("debit_voids_pkey", "debit_voids", ["idempotency_key", "asset"])

    op.create_table(
        "clawbacks",
        sa.Column("lot_id", sa.String(length=36), nullable=False),
        sa.Column("grant_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("asset", sa.String(length=32), nullable=False),
        sa.Column("target", sa.BigInteger(), nullable=False),
        sa.Column("applied", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "applied >= 0 AND applied <= target", name="ck_clawbacks_applied_in_range"
        ),
        sa.PrimaryKeyConstraint("lot_id"),
    )
    op.create_table(
        "lot_extensions",
        sa.Column("lot_id", sa.String(length=36), nullable=False),
        sa.Column("journal_entry_id", sa.BigInteger(), nullable=False),
        sa.Column("old_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("new_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(["journal_entry_id"], ["journal_entries.id"]),
        sa.ForeignKeyConstraint(["lot_id"], ["lots.id"]),
        sa.PrimaryKeyConstraint("lot_id"),
    )
    op.create_index("ix_lot_extensions_entry", "lot_extensions", ["journal_entry_id"])


def downgrade() -> None:
    """Back to points only: the movements of every other asset are dropped with their lots."""
    op.drop_index("ix_lot_extensions_entry", table_name="lot_extensions")
    op.drop_table("lot_extensions")
    op.drop_table("clawbacks")
    op.execute("DELETE FROM debit_voids WHERE asset <> 'points'")
    op.drop_constraint("debit_voids_pkey", "debit_voids", type_="primary")
    op.create_primary_key("debit_voids_pkey", "debit_voids", ["idempotency_key"])
    op.drop_column("debit_voids", "asset")
    op.execute(
        "DELETE FROM allocations WHERE lot_id IN (SELECT id FROM lots WHERE asset <> 'points') "
        "OR journal_entry_id IN (SELECT id FROM journal_entries WHERE asset <> 'points')"
    )
    op.execute("DELETE FROM journal_entries WHERE asset <> 'points'")
    op.execute("DELETE FROM lots WHERE asset <> 'points'")
    op.execute("DELETE FROM accounts WHERE asset <> 'points'")
    op.drop_constraint("fk_journal_entries_account", "journal_entries", type_="foreignkey")
    op.drop_constraint("fk_lots_account", "lots", type_="foreignkey")
    op.drop_index("ix_journal_created_at", table_name="journal_entries")
    op.drop_index("uq_journal_key_asset", table_name="journal_entries")
    op.create_unique_constraint(
        "journal_entries_idempotency_key_key", "journal_entries", ["idempotency_key"]
    )
    op.drop_constraint("ck_journal_moves_something", "journal_entries", type_="check")
    op.create_check_constraint("ck_journal_amount_not_zero", "journal_entries", "amount <> 0")
    op.drop_column("journal_entries", "debt_delta")
    op.drop_column("journal_entries", "pending_delta")
    op.drop_column("journal_entries", "asset")
    op.drop_index("ix_lots_pending", table_name="lots")
    op.drop_index("ix_lots_spendable", table_name="lots")
    op.create_index(
        "ix_lots_spendable",
        "lots",
        ["user_id", "expires_at"],
        postgresql_where=sa.text("status = 'active' AND remaining > 0"),
    )
    op.drop_column("lots", "available_at")
    op.drop_column("lots", "asset")
    op.drop_constraint("fk_accounts_asset", "accounts", type_="foreignkey")
    op.drop_constraint("accounts_pkey", "accounts", type_="primary")
    op.create_primary_key("accounts_pkey", "accounts", ["user_id"])
    op.drop_constraint("ck_accounts_debt_not_negative", "accounts", type_="check")
    op.drop_constraint("ck_accounts_pending_not_negative", "accounts", type_="check")
    op.drop_column("accounts", "debt")
    op.drop_column("accounts", "pending")
    op.drop_column("accounts", "asset")
    op.create_foreign_key(
        "journal_entries_user_id_fkey", "journal_entries", "accounts", ["user_id"], ["user_id"]
    )
    op.create_foreign_key("lots_user_id_fkey", "lots", "accounts", ["user_id"], ["user_id"])
    op.drop_table("assets")
