"""Ledger tables: assets, accounts per (user, asset), lots, an append-only journal, allocations,
holds.

An account holds four amounts of one asset: `balance` (the points in its active lots),
`held` (the part of the balance reserved by open holds: `balance - held` is available,
spendable when the asset is), `pending` (credited, available at the lot's available_at) and
`debt` (clawed back after it was spent; later credits repay it first). The journal moves all
four: `amount` moves the balance (and `balance_after` follows it), `held_delta`,
`pending_delta` and `debt_delta` the others. A lot's `held` is the part of its `remaining`
that open holds reserve (hold_lots says which hold).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from shared.messaging import add_messaging_tables

metadata = MetaData()
messaging = add_messaging_tables(metadata)

# What an account can hold: points (spendable, expiring), growth (neither), campaign currencies.
assets = Table(
    "assets",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("spendable", Boolean, nullable=False),
    Column("expires", Boolean, nullable=False),
    Column("default_validity_days", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # {mode: days | months_end | year_end, n} (shared/validity.py); default_validity_days
    # mirrors n in days mode, for the readers from before the modes
    Column("default_validity", JSONB(none_as_null=True), nullable=True),
    CheckConstraint(
        "expires OR (default_validity_days IS NULL AND default_validity IS NULL)",
        name="ck_assets_validity_only_if_expiring",
    ),
)

accounts = Table(
    "accounts",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column(
        "asset",
        String(32),
        ForeignKey("assets.code", name="fk_accounts_asset"),
        primary_key=True,
        server_default="points",
    ),
    Column("balance", BigInteger, nullable=False, server_default="0"),
    Column("pending", BigInteger, nullable=False, server_default="0"),
    Column("debt", BigInteger, nullable=False, server_default="0"),
    Column("held", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("balance >= 0", name="ck_accounts_balance_not_negative"),
    CheckConstraint("pending >= 0", name="ck_accounts_pending_not_negative"),
    CheckConstraint("debt >= 0", name="ck_accounts_debt_not_negative"),
    CheckConstraint("held >= 0 AND held <= balance", name="ck_accounts_held_in_balance"),
)


def _account_fk(table: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["user_id", "asset"],
        ["accounts.user_id", "accounts.asset"],
        name=f"fk_{table}_account",
    )


# A lot is one credit with its own expiry; debits consume lots earliest-expiring first.
# pending (until available_at) -> active -> expired; a pending lot clawed back in full is
# cancelled. Points an open hold reserves (`held`) do not expire with their lot: a past-due
# lot keeps them, still active, until the hold is captured or released.
lots = Table(
    "lots",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("asset", String(32), nullable=False, server_default="points"),
    Column("origin", String(16), nullable=False),  # grant | adjustment
    Column("origin_ref", String(255), nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("available_at", DateTime(timezone=True), nullable=True),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("held", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    _account_fk("lots"),
    CheckConstraint("points > 0", name="ck_lots_points_positive"),
    CheckConstraint("remaining >= 0 AND remaining <= points", name="ck_lots_remaining_in_range"),
    CheckConstraint("held >= 0 AND held <= remaining", name="ck_lots_held_in_remaining"),
)
Index(
    "ix_lots_spendable",
    lots.c.user_id,
    lots.c.asset,
    lots.c.expires_at,
    postgresql_where=text("status = 'active' AND remaining > 0"),
)
Index(
    "ix_lots_due", lots.c.expires_at, postgresql_where=text("status = 'active' AND remaining > 0")
)
Index(
    "ix_lots_pending",
    lots.c.available_at,
    postgresql_where=text("status = 'pending' AND remaining > 0"),
)

journal_entries = Table(
    "journal_entries",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("asset", String(32), nullable=False, server_default="points"),
    # credit | debit | expire | adjustment | refund | pending | release | clawback
    # | debt_repaid | extension | hold | hold_void
    Column("kind", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),  # signed move of the available balance
    Column("balance_after", BigInteger, nullable=False),
    Column("pending_delta", BigInteger, nullable=False, server_default="0"),
    Column("debt_delta", BigInteger, nullable=False, server_default="0"),
    Column("held_delta", BigInteger, nullable=False, server_default="0"),
    # Unique per asset (uq_journal_key_asset): the same caller key may move points and balloons.
    Column("idempotency_key", String(255), nullable=False),
    # the lot a credit created, an expiry closed, a release freed or a clawback reversed
    Column("lot_id", String(36), nullable=True),
    Column("reference", String(255), nullable=True),
    Column("reason", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    _account_fk("journal_entries"),
    CheckConstraint("balance_after >= 0", name="ck_journal_balance_after_not_negative"),
    CheckConstraint(
        "amount <> 0 OR pending_delta <> 0 OR debt_delta <> 0 OR held_delta <> 0",
        name="ck_journal_moves_something",
    ),
)
Index(
    "uq_journal_key_asset",
    journal_entries.c.idempotency_key,
    journal_entries.c.asset,
    unique=True,
)
Index("ix_journal_user_id", journal_entries.c.user_id, journal_entries.c.id)
# The liability report's "last 30 days": the journal is written in time order, so BRIN.
Index("ix_journal_created_at", journal_entries.c.created_at, postgresql_using="brin")

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
    Column("asset", String(32), primary_key=True, server_default="points"),
    Column("user_id", String(64), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# What refunds of an order asked to take back from one granted lot: `target` is the total to
# reverse so far (it only grows), `applied` what has been reversed. A clawback that arrives
# before its grant waits here and is applied when the grant is credited.
clawbacks = Table(
    "clawbacks",
    metadata,
    Column("lot_id", String(36), primary_key=True),
    Column("grant_id", String(128), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("asset", String(32), nullable=False),
    Column("target", BigInteger, nullable=False),
    Column("applied", BigInteger, nullable=False, server_default="0"),
    Column("reference", String(255), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("applied >= 0 AND applied <= target", name="ck_clawbacks_applied_in_range"),
)

# A lot's expiry moved by a paid extension (at most once per lot: the primary key).
lot_extensions = Table(
    "lot_extensions",
    metadata,
    Column("lot_id", String(36), ForeignKey("lots.id"), primary_key=True),
    Column("journal_entry_id", BigInteger, ForeignKey("journal_entries.id"), nullable=False),
    Column("old_expires_at", DateTime(timezone=True), nullable=False),
    Column("new_expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_lot_extensions_entry", lot_extensions.c.journal_entry_id)

# A hold (积分抵现 at checkout): points reserved from the earliest-expiring lots until they are
# captured (in whole or in part: a debit journal entry, the rest released) or voided (by the
# caller, or by the sweeper at `expires_at`). Exactly one of the two ever happens: `status`
# moves once, from open, under the account's lock.
holds = Table(
    "holds",
    metadata,
    Column("id", String(36), primary_key=True),  # from (asset, idempotency_key)
    Column("user_id", String(64), nullable=False),
    Column("asset", String(32), nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    Column("reference", String(255), nullable=True),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("captured", BigInteger, nullable=False, server_default="0"),
    # the caller's key of the capture or void that closed it (none when the deadline did)
    Column("settle_key", String(255), nullable=True),
    Column("closed_by", String(16), nullable=True),  # capture | void | deadline
    Column("entry_id", BigInteger, ForeignKey("journal_entries.id"), nullable=False),
    Column("settle_entry_id", BigInteger, ForeignKey("journal_entries.id"), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    _account_fk("holds"),
    CheckConstraint("points > 0", name="ck_holds_points_positive"),
    CheckConstraint(
        "status = 'captured' AND captured > 0 AND captured <= points "
        "OR status <> 'captured' AND captured = 0",
        name="ck_holds_captured_in_range",
    ),
    CheckConstraint(
        "(status = 'open') = (closed_by IS NULL AND settle_entry_id IS NULL)",
        name="ck_holds_closed_once",
    ),
)
Index("uq_holds_key_asset", holds.c.idempotency_key, holds.c.asset, unique=True)
Index(
    "uq_holds_settle_key_asset",
    holds.c.settle_key,
    holds.c.asset,
    unique=True,
    postgresql_where=text("settle_key IS NOT NULL"),
)
Index("ix_holds_due", holds.c.expires_at, postgresql_where=text("status = 'open'"))
Index("ix_holds_account", holds.c.user_id, holds.c.asset, holds.c.created_at)

# Which lots a hold reserves its points from (lots.held sums the open holds' rows).
hold_lots = Table(
    "hold_lots",
    metadata,
    Column("hold_id", String(36), ForeignKey("holds.id"), primary_key=True),
    Column("lot_id", String(36), ForeignKey("lots.id"), primary_key=True),
    Column("points", BigInteger, nullable=False),
    CheckConstraint("points > 0", name="ck_hold_lots_points_positive"),
)
Index("ix_hold_lots_lot", hold_lots.c.lot_id)
