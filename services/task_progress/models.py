"""Task rules, per-(user, task, period) progress, the grants completions produced, and the
paid orders and their refunds (to take back what a refunded order earned)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from shared.messaging import Purge, add_messaging_tables

metadata = MetaData()
messaging = add_messaging_tables(metadata)

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("action", String(64), nullable=False),
    Column("kind", String(16), nullable=False, server_default="count"),
    Column("target_count", Integer, nullable=False, server_default="1"),
    Column("reward_points", Integer, nullable=False),
    Column("amount_unit_cents", BigInteger, nullable=True),
    Column("amount_attribute", String(64), nullable=False, server_default="amount_cents"),
    Column("period", String(16), nullable=False),
    Column("max_per_period", Integer, nullable=True),
    Column("conditions", JSONB, nullable=False, server_default="[]"),
    Column("points_validity_days", Integer, nullable=True),
    Column("active", Boolean, nullable=False, server_default="true"),
    Column("starts_at", DateTime(timezone=True), nullable=True),
    Column("ends_at", DateTime(timezone=True), nullable=True),
    Column("reward_type", String(32), nullable=False, server_default="points"),
    Column("extra_rewards", JSONB, nullable=False, server_default="[]"),  # [{reward_type, amount}]
    Column("pending_days", Integer, nullable=True),
    # check-in rules: [{day, amount}], the cycle and what happens after it, make-ups
    Column("ladder", JSONB, nullable=True),
    Column("cycle_days", Integer, nullable=True),
    Column("after_cycle", String(16), nullable=False, server_default="restart"),
    Column("makeup", JSONB, nullable=True),  # {window_days, max_per_month, cost_points}
    # bumped by every change of a field that decides what the rule pays (task_versions)
    Column("version", Integer, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # how long its grants stay valid, {mode: days | months_end | year_end, n}
    # (shared/validity.py); points_validity_days mirrors n in days mode
    Column("validity", JSONB(none_as_null=True), nullable=True),
    CheckConstraint("target_count >= 1", name="ck_tasks_target_count"),
    CheckConstraint("reward_points >= 1", name="ck_tasks_reward_points"),
)
Index("ix_tasks_active_action", tasks.c.action, postgresql_where=tasks.c.active)

progress = Table(
    "progress",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("task_id", String(36), ForeignKey("tasks.id"), primary_key=True),
    Column("period_key", String(16), primary_key=True),
    Column("count", Integer, nullable=False, server_default="0"),
    Column("completions", Integer, nullable=False, server_default="0"),
    Column("points", BigInteger, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False, server_default="not_started"),
    Column("last_event_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

grants = Table(
    "grants",
    metadata,
    Column("grant_id", String(36), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("task_id", String(36), ForeignKey("tasks.id"), nullable=False),
    Column("period_key", String(16), nullable=False),
    Column("completion", Integer, nullable=False),
    Column("points", Integer, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("causation_event_id", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("asset", String(32), nullable=False, server_default="points"),
    Column("available_at", DateTime(timezone=True), nullable=True),
    Column("rule_version", Integer, nullable=False, server_default="1"),
)
Index("ix_grants_user", grants.c.user_id, grants.c.created_at)
Index("ix_grants_causation", grants.c.causation_event_id)  # an order's grants, on refund

# Every order_paid behavior with an amount: what a refund of it is measured against.
orders = Table(
    "orders",
    metadata,
    Column("order_behavior_id", String(36), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("source", String(64), nullable=False),
    Column("order_no", String(128), nullable=False),  # the order_paid behavior's event_id
    Column("paid_cents", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# One row per refund of an order; it may arrive before its order (then applied when it comes).
order_refunds = Table(
    "order_refunds",
    metadata,
    Column("order_behavior_id", String(36), primary_key=True),
    Column("refund_no", String(128), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("amount_cents >= 0", name="ck_order_refunds_amount"),
)

# Every version of a rule: what it paid from `created_at` on.
task_versions = Table(
    "task_versions",
    metadata,
    Column("task_id", String(36), ForeignKey("tasks.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("rule", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# A user's check-in days per check-in rule: kind, position in its run of consecutive days,
# and what the day has paid so far (a longer streak later pays only the difference).
checkins = Table(
    "checkins",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("task_id", String(36), ForeignKey("tasks.id"), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("kind", String(8), nullable=False),  # normal | makeup
    Column("streak", Integer, nullable=False),
    Column("paid", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# 补签 requests: pending until the ledger has taken the cost, then done (with the answer).
makeups = Table(
    "makeups",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("task_id", String(36), ForeignKey("tasks.id"), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("idempotency_key", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # pending | done
    Column("cost_points", Integer, nullable=False),
    Column("result", JSONB, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# What task_progress has seen, for the dry run of a draft rule (kept
# JIFEN_BEHAVIOR_HISTORY_HOURS, at least the dedupe retention): its key is also the behavior
# consumer's inbox (a behavior kept here has been applied).
behavior_history = Table(
    "behavior_history",
    metadata,
    Column("behavior_id", String(36), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("attributes", JSONB, nullable=False, server_default="{}"),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_behavior_history_action", behavior_history.c.action, behavior_history.c.occurred_at)
Index("ix_behavior_history_received_at", behavior_history.c.received_at, postgresql_using="brin")

PURGES = (Purge("behavior_history", "received_at < :cutoff", "history_retention_hours"),)

# The member tiers engagement decided (tier.changed), each from when it took effect: a grant
# of points is multiplied by the tier its user held when the behavior happened.
tier_history = Table(
    "tier_history",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("sequence", Integer, primary_key=True),  # the user's count of tier changes
    Column("tier", String(64), nullable=True),
    Column("multiplier", Numeric(8, 4), nullable=False),
    Column("effective_at", DateTime(timezone=True), nullable=False),
)
