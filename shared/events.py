"""Schemas of the messages on Jifen's topics (the public contract in ARCHITECTURE.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# Topic names are part of the public contract.
UPSTREAM_EVENTS = "upstream.events"
UPSTREAM_ORDERS = "upstream.orders"
BEHAVIOR_EVENTS = "behavior.events"
BEHAVIOR_DIVERTED = "behavior.diverted"
REWARDS_GRANTS = "rewards.grants"
LEDGER_EVENTS = "ledger.events"
EXCHANGE_EVENTS = "exchange.events"


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


ACTION_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
JIFEN_NAMESPACE = uuid.UUID("6f1c1d7e-3a52-4f0e-9a77-4f0d7c1b5e21")


def stable_id(*parts: object) -> str:
    """A deterministic UUID from its parts: replaying the same input yields the same id."""
    return str(uuid.uuid5(JIFEN_NAMESPACE, "\x1f".join(str(p) for p in parts)))


class BehaviorEnvelope(BaseModel):
    """What an upstream system sends: one user behavior."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    event_id: str = Field(min_length=1, max_length=128)
    source: str = Field(min_length=1, max_length=64)
    user_id: str = Field(min_length=1, max_length=64)
    action: str = Field(pattern=ACTION_PATTERN)
    occurred_at: AwareDatetime
    attributes: dict[str, Any] = Field(default_factory=dict)


class BehaviorEvent(BaseModel):
    """A validated, de-duplicated, enriched behavior as published on behavior.events."""

    model_config = ConfigDict(extra="ignore")

    behavior_id: str
    event_id: str
    source: str
    user_id: str
    action: str
    occurred_at: AwareDatetime
    attributes: dict[str, Any] = Field(default_factory=dict)
    enrichment: dict[str, Any] = Field(default_factory=dict)
    received_at: AwareDatetime


class GrantCommand(BaseModel):
    """One task completion turned into points, published on rewards.grants."""

    model_config = ConfigDict(extra="ignore")

    grant_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=64)
    points: int = Field(gt=0, le=100_000_000)
    expires_at: AwareDatetime | None = None
    task_id: str
    period_key: str
    completion: int = Field(ge=1)
    causation_event_id: str
    occurred_at: AwareDatetime
    reason: str = ""


class LedgerEvent(BaseModel):
    """A movement of points, published on ledger.events."""

    type: Literal["credited", "debited", "expired", "refunded", "adjusted"]
    entry_id: int
    user_id: str
    points: int
    balance_after: int
    idempotency_key: str
    occurred_at: datetime
    reference: str | None = None


class ExchangeEvent(BaseModel):
    """A redemption changing state, published on exchange.events."""

    type: Literal[
        "redemption.completed",
        "redemption.failed",
        "redemption.cancelled",
        "redemption.shipped",
        "redemption.delivered",
    ]
    redemption_id: str
    user_id: str
    item_id: str
    item_type: str
    quantity: int
    points: int
    status: str
    failure_code: str | None = None
    compensated: bool = False
    fulfilment_status: str | None = None
    reward: dict[str, Any] | None = None
    occurred_at: datetime
