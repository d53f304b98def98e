"""Engagement tables: boards and their scores per period (the truth the Redis index is built
from), closed standings and daily rank snapshots, anti-farming flags, the counters badges
and tiers are measured on, badges awarded, the tier ladder and each user's tier, and users'
display names."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
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

from shared.messaging import Purge, add_messaging_tables

metadata = MetaData()
messaging = add_messaging_tables(metadata)

boards = Table(
    "boards",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("metric", String(32), nullable=False),  # points_earned | growth_earned | action_count
    Column("action", String(64), nullable=True),  # the action an action_count board counts
    Column("window", String(16), nullable=False),  # day | week | month | all_time
    Column("prizes", JSONB, nullable=False, server_default="[]"),
    Column("active", Boolean, nullable=False, server_default="true"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # how the public reads show users: masked (张**) | full | hidden (pseudonyms only)
    Column("name_display", String(8), nullable=False, server_default="masked"),
)

# What each user scored on a board in a period. reached_at is when the score last changed
# (by the event's own time): of two equal scores, the one reached first wins a prize.
board_scores = Table(
    "board_scores",
    metadata,
    Column("board_code", String(64), primary_key=True),
    Column("period_key", String(16), primary_key=True),
    Column("user_id", String(64), primary_key=True),
    Column("score", BigInteger, nullable=False),
    Column("reached_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# BRIN: rows are written in time order, so the index finds recent changes for next to nothing.
Index("ix_board_scores_updated_at", board_scores.c.updated_at, postgresql_using="brin")

# A period of a board that has scores; closed once its end and the grace have passed.
board_periods = Table(
    "board_periods",
    metadata,
    Column("board_code", String(64), primary_key=True),
    Column("period_key", String(16), primary_key=True),
    Column("starts_at", DateTime(timezone=True), nullable=True),
    Column("ends_at", DateTime(timezone=True), nullable=True),  # null: all_time never ends
    Column("status", String(8), nullable=False, server_default="open"),  # open | closed
    Column("closed_at", DateTime(timezone=True), nullable=True),
)
Index(
    "ix_board_periods_to_close",
    board_periods.c.ends_at,
    postgresql_where=text("status = 'open'"),
)

# A closed period's final standings (the top ranks and every prize rank).
board_results = Table(
    "board_results",
    metadata,
    Column("board_code", String(64), primary_key=True),
    Column("period_key", String(16), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("rank", Integer, nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("score", BigInteger, nullable=False),
    Column("prize", JSONB, nullable=True),
    Column("grant_id", String(64), nullable=True),
)

# Each user's rank at the end of a business day, in the board's period containing that day.
rank_snapshots = Table(
    "rank_snapshots",
    metadata,
    Column("board_code", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("user_id", String(64), primary_key=True),
    Column("period_key", String(16), nullable=False),
    Column("rank", Integer, nullable=False),
    Column("score", BigInteger, nullable=False),
)
snapshot_days = Table(
    "snapshot_days",
    metadata,
    Column("board_code", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("users", Integer, nullable=False),
    Column("taken_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Users anti-farming diverted behaviors of: off the leaderboards until flagged_until.
flagged_users = Table(
    "flagged_users",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("flagged_until", DateTime(timezone=True), nullable=False),
    Column("diversions", Integer, nullable=False),
    Column("last_reason", Text, nullable=False, server_default=""),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Counters badges and tiers are measured on.
action_daily = Table(
    "action_daily",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("action", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("count", BigInteger, nullable=False),
)
earned_daily = Table(
    "earned_daily",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("asset", String(32), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("amount", BigInteger, nullable=False),
)
user_counters = Table(
    "user_counters",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("name", String(32), primary_key=True),  # redemptions | best_streak
    Column("value", BigInteger, nullable=False),
)

badges = Table(
    "badges",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("icon_url", String(2000), nullable=True),
    Column("criteria", JSONB, nullable=False),
    Column("reward", JSONB, nullable=True),  # {reward_type, amount}: a grant on award
    Column("active", Boolean, nullable=False, server_default="true"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
user_badges = Table(
    "user_badges",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("badge_code", String(64), primary_key=True),
    Column("awarded_at", DateTime(timezone=True), nullable=False),
    Column("grant_id", String(64), nullable=True),
)

# The tier ladder (会员等级), replaced as a whole; `version` grows with every replacement.
tiers = Table(
    "tiers",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("min_growth", BigInteger, nullable=False, unique=True),
    Column("multiplier", Float, nullable=False),
    Column("benefits", JSONB, nullable=False, server_default="[]"),
    Column("version", Integer, nullable=False),
)
# A user's tier (no row: the ladder's base tier, if it has one with min_growth 0). The tier
# is held until evaluate_at (the end of its term) plus the downgrade grace; `sequence` counts
# the user's tier changes so readers of tier.changed keep the newest.
user_tiers = Table(
    "user_tiers",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("tier_code", String(32), nullable=True),
    Column("since", DateTime(timezone=True), nullable=False),
    Column("evaluate_at", DateTime(timezone=True), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_user_tiers_evaluate_at", user_tiers.c.evaluate_at)

# Users' display names and avatars for the boards (PUT .../profile or `profile_updated`
# behaviors). Each field keeps the time it was set: the newest write wins, whatever order
# the writes arrive in.
user_profiles = Table(
    "user_profiles",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("display_name", String(64), nullable=True),
    Column("name_at", DateTime(timezone=True), nullable=True),
    Column("avatar_url", String(2000), nullable=True),
    Column("avatar_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

PURGES = (
    Purge("rank_snapshots", "day < CAST(:cutoff AS date)", "history_hours"),
    Purge("snapshot_days", "day < CAST(:cutoff AS date)", "history_hours"),
    Purge("flagged_users", "flagged_until < :cutoff"),
)
