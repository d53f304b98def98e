"""Ledger tables: accounts, lots, an append-only journal and debit allocations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)

from shared.messaging import add_messaging_tables

metadata = MetaData()
messaging = add_messaging_tables(metadata)

accounts = Table(
    "accounts",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("balance", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("balance >= 0", name="ck_accounts_balance_not_negative"),
)

# A lot is one credit with its own expiry; debits consume lots earliest-expiring first.
lots = Table(
    "lots",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(64), ForeignKey("accounts.user_id"), nullable=False),
    Column("origin", String(16), nullable=False),  # grant | adjustment
    Column("origin_ref", String(255), nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("status", String(16), nullable=False, server_default="active"),  # active | expired
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("points > 0", name="ck_lots_points_positive"),
    CheckConstraint("remaining >= 0 AND remaining <= points", name="ck_lots_remaining_in_range"),
)
Index(
    "ix_lots_spendable",
    lots.c.user_id,
    lots.c.expires_at,
    postgresql_where=text("status = 'active' AND remaining > 0"),
)
Index(
    "ix_lots_due", lots.c.expires_at, postgresql_where=text("status = 'active' AND remaining > 0")
)

journal_entries = Table(
    "journal_entries",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("user_id", String(64), ForeignKey("accounts.user_id"), nullable=False),
    Column("kind", String(16), nullable=False),  # credit | debit | expire | adjustment | refund
    Column("amount", BigInteger, nullable=False),  # signed: + credits, - debits and expiries
    Column("balance_after", BigInteger, nullable=False),
    Column("idempotency_key", String(255), nullable=False, unique=True),
    Column("lot_id", String(36), nullable=True),  # the lot a credit created or an expiry closed
    Column("reference", String(255), nullable=True),
    Column("reason", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("balance_after >= 0", name="ck_journal_balance_after_not_negative"),
    CheckConstraint("amount <> 0", name="ck_journal_amount_not_zero"),
)
Index("ix_journal_user_id", journal_entries.c.user_id, journal_entries.c.id)

# Which lots a debit took points from (kind debit) or a refund gave them back to (kind refund).
allocations = Table(
    "allocations",
    metadata,
    Column("journal_entry_id", BigInteger, ForeignKey("journal_entries.id"), primary_key=True),
    Column("lot_id", String(36), ForeignKey("lots.id"), primary_key=True),
    Column("points", BigInteger, nullable=False),
    CheckConstraint("points > 0", name="ck_allocations_points_positive"),
)
Index("ix_allocations_lot", allocations.c.lot_id)

# A debit key cancelled before its debit arrived (a caller gave up on a timed-out debit and
# compensated). A debit that shows up later with this key is refused, so it cannot strand
# points after the caller has already released what it reserved.
debit_voids = Table(
    "debit_voids",
    metadata,
    Column("idempotency_key", String(255), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
