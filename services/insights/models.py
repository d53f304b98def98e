"""Insights tables: its own rollups of every topic (daily KPI counters and the sets they are
counted from), experiments with their exposures and outcomes, and the read models the
recommender ranks from (redemptions, balances, tiers, a copy of the catalog, points expiring
soon). Nothing here is read by another service; everything is rebuilt by replaying topics."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from shared.messaging import add_messaging_tables

metadata = MetaData()
messaging = add_messaging_tables(metadata)

# One counter per business day, asset ('' when the metric has none) and metric: every KPI
# is a ratio or a sum of these, so a 90-day series reads at most 90 rows per metric.
kpi_daily = Table(
    "kpi_daily",
    metadata,
    Column("day", Date, primary_key=True),
    Column("asset", String(32), primary_key=True),
    Column("metric", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# Who was active (had a behavior) on each business day: DAU counts the new rows.
active_days = Table(
    "active_days",
    metadata,
    Column("day", Date, primary_key=True),
    Column("user_id", String(64), primary_key=True),
)

# Who completed a redemption on each business day (distinct redeemers over any window).
redeemer_days = Table(
    "redeemer_days",
    metadata,
    Column("day", Date, primary_key=True),
    Column("user_id", String(64), primary_key=True),
)

# A task-period a user started (a behavior of a rule's action, or its completion) and whether
# it was completed. Counted on the day it started, so a day's rate never exceeds 1; the
# earliest day seen wins, whatever order the topics arrive in.
task_periods = Table(
    "task_periods",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("period_key", String(16), primary_key=True),
    Column("user_id", String(64), primary_key=True),
    Column("day", Date, nullable=True),
    Column("completed", Boolean, nullable=False, server_default="false"),
)

# A notification, counted on the day it was sent: opened / sent on the same cohort.
notifications = Table(
    "notifications",
    metadata,
    Column("notification_id", String(128), primary_key=True),
    Column("day", Date, nullable=True),
    Column("sent", Boolean, nullable=False, server_default="false"),
    Column("opened", Boolean, nullable=False, server_default="false"),
)

# Each account's balance (from ledger.events' balance_after) and whether it holds at least
# the holder threshold: crossings are counted as holder_opens / holder_closes.
balances = Table(
    "balances",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("asset", String(32), primary_key=True),
    Column("balance", BigInteger, nullable=False, server_default="0"),
    Column("entry_id", BigInteger, nullable=False, server_default="0"),
    Column("holder", Boolean, nullable=False, server_default="false"),
)

experiments = Table(
    "experiments",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("variants", JSONB, nullable=False),  # [{key, weight}]
    Column("metric", JSONB, nullable=False),  # {type, event, window_days}
    Column("namespace", JSONB, nullable=True),  # [name, start, end]
    Column("coverage", Float, nullable=False, server_default="1"),
    Column("seed", String(64), nullable=True),
    Column("hash_version", Integer, nullable=False, server_default="2"),
    Column("status", String(16), nullable=False),  # draft | running | stopped
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The first exposure of each user to each experiment (experiment.exposures).
exposures = Table(
    "exposures",
    metadata,
    Column("experiment_key", String(64), primary_key=True),
    Column("user_id", String(64), primary_key=True),
    Column("variant", String(64), nullable=False),
    Column("exposed_at", DateTime(timezone=True), nullable=False),
    Column("source", String(64), nullable=False),
)

# What an experiment can measure: redemptions, points spent, notifications opened.
outcomes = Table(
    "outcomes",
    metadata,
    Column("event_id", String(160), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("experiment", String(64), nullable=True),
    Column("amount", BigInteger, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
)
Index("ix_outcomes_user_kind", outcomes.c.user_id, outcomes.c.kind, outcomes.c.occurred_at)

# Completed redemptions (exchange.events): co-redemptions, popularity and per-user limits.
redemptions = Table(
    "redemptions",
    metadata,
    Column("redemption_id", String(64), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("item_id", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("completed_at", DateTime(timezone=True), nullable=False),
    Column("cancelled", Boolean, nullable=False, server_default="false"),
)
Index("ix_redemptions_user", redemptions.c.user_id)
Index("ix_redemptions_completed_at", redemptions.c.completed_at)

# Each user's member tier (engagement.events tier.changed), with the ladder's order then.
user_tiers = Table(
    "user_tiers",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("tier", String(32), nullable=True),
    Column("sequence", BigInteger, nullable=False),
    Column("ladder", JSONB, nullable=False, server_default="[]"),
)

# Copies of other services' reference data, refreshed over their HTTP APIs.
catalog_items = Table(
    "catalog_items",
    metadata,
    Column("item_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("category", String(64), nullable=False),
    Column("tags", JSONB, nullable=False, server_default="[]"),
    Column("points_price", BigInteger, nullable=False),
    Column("stock", BigInteger, nullable=False),
    Column("per_user_limit", JSONB, nullable=True),  # {period, quantity}
    Column("min_tier", String(32), nullable=True),
    Column("available", Boolean, nullable=False),
    Column("synced_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
task_rules = Table(
    "task_rules",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("action", String(64), nullable=False),
    Column("period", String(16), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("starts_at", DateTime(timezone=True), nullable=True),
    Column("ends_at", DateTime(timezone=True), nullable=True),
)
expiring_points = Table(
    "expiring_points",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("expires_at", DateTime(timezone=True), primary_key=True),
    Column("points", BigInteger, nullable=False),
)

# Each NPS response (an `nps_submitted` behavior) once: behaviors claim no inbox row, so this
# set is what keeps a redelivered response from being counted twice.
nps_responses = Table(
    "nps_responses",
    metadata,
    Column("behavior_id", String(160), primary_key=True),
    Column("day", Date, nullable=False),
    Column("score", SmallInteger, nullable=False),
)

# How long each completed redemption took, request to completion (exchange.events'
# requested_at and occurred_at): the slow-redemption signal of the business health.
redemption_latencies = Table(
    "redemption_latencies",
    metadata,
    Column("redemption_id", String(64), primary_key=True),
    Column("completed_at", DateTime(timezone=True), nullable=False),
    Column("duration_ms", BigInteger, nullable=False),
)
Index("ix_redemption_latencies_completed_at", redemption_latencies.c.completed_at)

# Each KPI's target as operators set it (the seed's values until then), and every change.
kpi_targets = Table(
    "kpi_targets",
    metadata,
    Column("kpi", String(32), primary_key=True),
    Column("target", Float, nullable=False),
    Column("updated_by", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
kpi_target_changes = Table(
    "kpi_target_changes",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("kpi", String(32), nullable=False),
    Column("old_target", Float, nullable=False),
    Column("new_target", Float, nullable=False),
    Column("changed_by", String(64), nullable=False),
    Column("operator", String(64), nullable=True),
    Column("reason", Text, nullable=False, server_default=""),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_kpi_target_changes_kpi", kpi_target_changes.c.kpi, kpi_target_changes.c.id)

# The business health's readings from outside insights (the suite's consumer lag, the
# ledger's and the exchange's reconciliation), written by the worker, graded by each request
# with its own thresholds. `value` keeps the last good reading; `error` the last failure.
health_signals = Table(
    "health_signals",
    metadata,
    Column("signal", String(64), primary_key=True),
    Column("value", JSONB, nullable=True),
    Column("read_at", DateTime(timezone=True), nullable=True),
    Column("error", Text, nullable=True),
    Column("tried_at", DateTime(timezone=True), nullable=False),
)
