"""Notifier tables: devices and preferences, the notifications themselves (one row per message
to one user, id derived from its cause), each delivery attempt, the per-day counters the caps
read, campaigns, templates, the daily trigger runs, and the two read models the streak and
task reminders are computed on."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from shared.messaging import Purge, add_messaging_tables

metadata = MetaData()
messaging = add_messaging_tables(metadata)

devices = Table(
    "devices",
    metadata,
    Column("token", String(4096), primary_key=True),  # a token belongs to one install
    Column("user_id", String(64), nullable=False),
    Column("platform", String(8), nullable=False),  # ios | android | web
    Column("active", Boolean, nullable=False, server_default="true"),
    Column("deactivated_reason", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_devices_user", devices.c.user_id, postgresql_where=text("active"))

preferences = Table(
    "preferences",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("reminders", Boolean, nullable=False, server_default="true"),
    Column("marketing", Boolean, nullable=False, server_default="true"),
    Column("quiet_start", String(5), nullable=True),  # HH:MM; null: the default window
    Column("quiet_end", String(5), nullable=True),
    Column("quiet_enabled", Boolean, nullable=False, server_default="true"),
    Column("timezone", String(64), nullable=True),  # null: the business timezone
    Column("locale", String(8), nullable=False, server_default="zh-CN"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# One message to one user. status: queued | deferred | claimed | sending | suppressed | sent |
# failed. due_at: when it may go (deferred ones: the end of the quiet window); a `claimed` or
# `sending` row's due_at is its lease (taken again after it, when its replica died). A row is
# `claimed` until the wave it is in goes out, then `sending` until its outcome is recorded.
notifications = Table(
    "notifications",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("category", String(16), nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("template", String(64), nullable=True),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("data", JSONB, nullable=False, server_default="{}"),
    Column("campaign_id", String(36), nullable=True),
    Column("experiment", String(64), nullable=True),
    Column("variant", String(64), nullable=True),
    Column("status", String(16), nullable=False, server_default="queued"),
    Column("reason", String(200), nullable=True),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("provider", String(16), nullable=True),
    Column("provider_message_id", String(200), nullable=True),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("opened_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index(
    "ix_notifications_due",
    notifications.c.due_at,
    postgresql_where=text("status IN ('queued', 'deferred', 'claimed', 'sending')"),
)
Index("ix_notifications_user", notifications.c.user_id, notifications.c.created_at)
Index(
    "ix_notifications_campaign",
    notifications.c.campaign_id,
    notifications.c.status,
    postgresql_where=text("campaign_id IS NOT NULL"),
)
Index("ix_notifications_created_at", notifications.c.created_at, postgresql_using="brin")

# Every request to a provider: one row per (notification, device, attempt).
attempts = Table(
    "attempts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("notification_id", String(36), nullable=False),
    Column("device", String(16), nullable=False),  # a digest of the token: never the token
    Column("provider", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),  # sent | retry | invalid_token | failed
    Column("status_code", SmallInteger, nullable=True),
    Column("detail", String(300), nullable=True),
    Column("provider_message_id", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_attempts_notification", attempts.c.notification_id)
Index("ix_attempts_created_at", attempts.c.created_at, postgresql_using="brin")

# What became of a notification on each device it went to: one row per (notification,
# device), written with the attempts. status: sent | retry (tried again with the
# notification) | invalid_token (the device was deactivated) | failed (refused, or given up).
# A notification is `sent` once every device is settled and one has it (NOTIFIER.md).
deliveries = Table(
    "deliveries",
    metadata,
    Column("notification_id", String(36), primary_key=True),
    Column("device", String(16), primary_key=True),  # a digest of the token: never the token
    Column("platform", String(8), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("status_code", SmallInteger, nullable=True),
    Column("error", String(300), nullable=True),
    Column("provider_message_id", String(200), nullable=True),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_deliveries_updated_at", deliveries.c.updated_at, postgresql_using="brin")

# What was let through per user and local day: the caps read and bump these.
daily_counts = Table(
    "daily_counts",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("capped", Integer, nullable=False, server_default="0"),  # reminders + marketing
    Column("marketing", Integer, nullable=False, server_default="0"),
)

campaigns = Table(
    "campaigns",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("audience", JSONB, nullable=False),
    Column("category", String(16), nullable=False),
    Column("template", String(64), nullable=True),
    Column("title", Text, nullable=True),
    Column("body", Text, nullable=True),
    Column("variables", JSONB, nullable=False, server_default="{}"),
    Column("send_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False, server_default="scheduled"),  # -> expanding, done
    Column("cursor", String(64), nullable=True),  # last recipient queued (user ids in order)
    Column("recipients", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expanded_at", DateTime(timezone=True), nullable=True),
)

templates = Table(
    "templates",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("category", String(16), nullable=False),
    Column("texts", JSONB, nullable=False),  # {"zh-CN": {"title", "body"}, "en": {...}}
    Column("variables", JSONB, nullable=False, server_default="[]"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# A daily trigger's run for one timezone and local day; `cursor` resumes a scan that died.
trigger_runs = Table(
    "trigger_runs",
    metadata,
    Column("trigger", String(32), primary_key=True),
    Column("timezone", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("status", String(16), nullable=False, server_default="running"),  # -> done
    Column("cursor", String(200), nullable=True),
    Column("queued", BigInteger, nullable=False, server_default="0"),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

# From progress.events: each user's latest check-in (for the streak-at-risk reminder) ...
checkin_state = Table(
    "checkin_state",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("last_day", Date, nullable=False),
    Column("streak", Integer, nullable=False),
)
Index("ix_checkin_state_last_day", checkin_state.c.last_day)

# ... and the last day each user completed each daily task (for the unfinished-tasks one).
task_days = Table(
    "task_days",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("task_id", String(64), primary_key=True),
    Column("last_day", Date, nullable=False),
)
Index("ix_task_days_last_day", task_days.c.last_day)

# From engagement.events: each user's tier (a campaign's audience may be a tier).
user_tiers = Table(
    "user_tiers",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("tier", String(64), nullable=True),
    Column("sequence", BigInteger, nullable=False),
)
Index("ix_user_tiers_tier", user_tiers.c.tier, user_tiers.c.user_id)

PURGES = (
    Purge("attempts", "created_at < :cutoff", "records_hours"),
    Purge("deliveries", "updated_at < :cutoff", "records_hours"),
    Purge(
        "notifications",
        "created_at < :cutoff AND status IN ('sent', 'suppressed', 'failed')",
        "records_hours",
    ),
    Purge("daily_counts", "day < CAST(:cutoff AS date)", "records_hours"),
    Purge("trigger_runs", "day < CAST(:cutoff AS date)", "records_hours"),
)
