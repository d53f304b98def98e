"""The console's own tables: operator sessions, the audit log and upgraded password hashes. It
keeps nothing else: everything it shows comes from the services' HTTP APIs."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# A signed-in operator. The cookie carries the session's token (signed); the row keeps only
# the token's SHA-256, so a read of this table cannot be replayed as a cookie.
sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("operator", String(64), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
)
Index("ix_sessions_expires_at", sessions.c.expires_at)

# Every write an operator asked for: who, what, on what, before and after, and what the
# service answered (refusals too, with their code).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("operator", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(300), nullable=False),
    Column("status", Integer, nullable=False),
    Column("outcome", String(64), nullable=False),
    Column("request", JSONB, nullable=True),
    Column("before", JSONB, nullable=True),
    Column("after", JSONB, nullable=True),
    Column("message", Text, nullable=True),
)
Index("ix_audit_log_target", audit_log.c.target, audit_log.c.id)

# An operator's password hash, upgraded at sign-in (an old scrypt hash, or argon2id with old
# parameters). Operators are configured (JIFEN_CONSOLE_USERS), which the console cannot write
# to: this row stands in for the configured hash as long as that hash is the one whose SHA-256
# is `configured_hash_digest`; once the configuration gives another hash, that one counts.
operator_passwords = Table(
    "operator_passwords",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("configured_hash_digest", String(64), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
