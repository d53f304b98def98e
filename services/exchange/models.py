"""Exchange tables: the catalog, redemptions, per-user limit counters and issued rewards."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from shared.messaging import add_messaging_tables

metadata = MetaData()
messaging = add_messaging_tables(metadata)

items = Table(
    "items",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("image_url", String(2000), nullable=True),
    Column("category", String(64), nullable=False),
    Column("tags", ARRAY(String(64)), nullable=False, server_default="{}"),
    Column("type", String(16), nullable=False),  # physical | coupon | vip | virtual
    Column("points_price", BigInteger, nullable=False),
    # stock on hand; stock_total counts every unit ever supplied, so for each item
    # stock + units held by live redemptions = stock_total (checked by reconciliation)
    Column("stock", BigInteger, nullable=False),
    Column("stock_total", BigInteger, nullable=False),
    Column("limit_period", String(16), nullable=True),  # day | month | lifetime
    Column("limit_quantity", Integer, nullable=True),
    Column("vip_days", Integer, nullable=True),
    Column("coupon_value_cents", BigInteger, nullable=True),
    Column("active", Boolean, nullable=False, server_default="true"),
    Column("starts_at", DateTime(timezone=True), nullable=True),
    Column("ends_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("min_tier", String(32), nullable=True),  # lowest member tier that may redeem it
    CheckConstraint("stock >= 0", name="ck_items_stock_not_negative"),
    CheckConstraint("stock <= stock_total", name="ck_items_stock_within_total"),
    CheckConstraint("points_price > 0", name="ck_items_price_positive"),
)
Index("ix_items_listing", items.c.category, items.c.points_price, items.c.id)

# status: pending (stock reserved, debit not confirmed) -> completed | failed;
# completed -> cancelling (refund not confirmed) -> cancelled
redemptions = Table(
    "redemptions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("item_id", String(36), ForeignKey("items.id"), nullable=False),
    Column("item_type", String(16), nullable=False),
    Column("item_name", String(200), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("holds_stock", Boolean, nullable=False),  # units are out of stock on its account
    Column("limit_period_key", String(16), nullable=True),  # the counter it used, if any
    Column("failure_code", String(64), nullable=True),
    Column("failure_message", Text, nullable=True),
    Column("compensated", Boolean, nullable=False, server_default="false"),
    Column("ledger_entry_id", BigInteger, nullable=True),
    Column("balance_after", BigInteger, nullable=True),
    Column("reward", JSONB, nullable=True),
    Column(
        "fulfilment_status", String(16), nullable=True
    ),  # pending | shipped | delivered | cancelled
    Column("shipping_address", Text, nullable=True),
    Column("carrier", String(64), nullable=True),
    Column("tracking_number", String(128), nullable=True),
    Column("cancel_reason", Text, nullable=True),
    Column("cancelled_by", String(16), nullable=True),
    Column("refund_entry_id", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("user_id", "idempotency_key", name="uq_redemptions_user_key"),
    CheckConstraint("quantity > 0", name="ck_redemptions_quantity_positive"),
)
Index("ix_redemptions_user", redemptions.c.user_id, redemptions.c.created_at)
Index(
    "ix_redemptions_unfinished",
    redemptions.c.next_attempt_at,
    postgresql_where=text("status IN ('pending', 'cancelling')"),
)
# Quick options rank items by their redemptions of the last 7 days (exchange_count): counted
# from this index, completed redemptions only.
Index(
    "ix_redemptions_item_completed",
    redemptions.c.item_id,
    redemptions.c.created_at,
    postgresql_where=text("status = 'completed'"),
)
# The shipping queue (GET /v1/fulfilments): physical redemptions only, by step and age. The
# queue's `fulfilment_status = $1` implies IS NOT NULL (= is strict), so even the generic
# plan of the prepared statement reaches this index.
Index(
    "ix_redemptions_fulfilment",
    redemptions.c.fulfilment_status,
    redemptions.c.created_at,
    redemptions.c.id,
    postgresql_where=text("fulfilment_status IS NOT NULL"),
)

# Units a user redeemed of an item in a limit period (day / month / lifetime key).
purchase_counters = Table(
    "purchase_counters",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("item_id", String(36), primary_key=True),
    Column("period_key", String(16), primary_key=True),
    Column("quantity", Integer, nullable=False),
    CheckConstraint("quantity >= 0", name="ck_purchase_counters_not_negative"),
)

coupons = Table(
    "coupons",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("redemption_id", String(36), ForeignKey("redemptions.id"), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("item_id", String(36), nullable=False),
    Column("value_cents", BigInteger, nullable=True),
    Column("status", String(16), nullable=False, server_default="issued"),  # issued | revoked
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_coupons_redemption", coupons.c.redemption_id)

memberships = Table(
    "memberships",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("vip_until", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Member tiers as engagement decides them (engagement.events tier.changed): a local read model,
# so that a redemption checks a tier-only item without a call to another service. `sequence`
# is the user's count of tier changes; an older event never overwrites a newer one.
member_tiers = Table(
    "member_tiers",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("tier", String(32), nullable=True),
    Column("sequence", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
# The tier ladder's order (code -> level, 1 = lowest), from the newest ladder version seen.
tier_ladder = Table(
    "tier_ladder",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("level", Integer, nullable=False),
    Column("min_growth", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
)
