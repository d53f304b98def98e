"""Schemas of the messages on Jifen's topics (the public contract in ARCHITECTURE.md)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

from shared.instants import Instant
from shared.validity import Validity

# Topic names are part of the public contract.
UPSTREAM_EVENTS = "upstream.events"
UPSTREAM_ORDERS = "upstream.orders"
BEHAVIOR_EVENTS = "behavior.events"
BEHAVIOR_DIVERTED = "behavior.diverted"
REWARDS_GRANTS = "rewards.grants"
LEDGER_EVENTS = "ledger.events"
EXCHANGE_EVENTS = "exchange.events"
PROGRESS_EVENTS = "progress.events"
ENGAGEMENT_EVENTS = "engagement.events"
NOTIFY_EVENTS = "notify.events"
EXPERIMENT_EXPOSURES = "experiment.exposures"


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


ACTION_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
JIFEN_NAMESPACE = uuid.UUID("6f1c1d7e-3a52-4f0e-9a77-4f0d7c1b5e21")


_NAMESPACE_BYTES = JIFEN_NAMESPACE.bytes


def stable_id(*parts: object) -> str:
    """A deterministic UUID from its parts: replaying the same input yields the same id.

    Exactly `str(uuid.uuid5(JIFEN_NAMESPACE, "\\x1f".join(map(str, parts))))` (a test holds
    them equal), computed without the UUID object: ids are minted for every behavior, grant,
    lot and event, and uuid5's objects were a third of a dry run's time.
    """
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join(map(str, parts)).encode()).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class BehaviorEnvelope(BaseModel):
    """What an upstream system sends: one user behavior."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    event_id: str = Field(min_length=1, max_length=128)
    source: str = Field(min_length=1, max_length=64)
    user_id: str = Field(min_length=1, max_length=64)
    action: str = Field(pattern=ACTION_PATTERN)
    occurred_at: Instant
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


ASSET_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
DEFAULT_ASSET = "points"


class GrantCommand(BaseModel):
    """One reward of a task completion, published on rewards.grants.

    `points` is the amount of `asset` (points, growth, balloon, ...). With `available_at` in
    the future the lot is credited as pending (visible, not spendable) until then. A
    completion paying several assets sends one grant per asset, each with its own grant_id.

    `validity` is the rule's own (days, end of the Nth month or year after earning); the lot
    of an expiring asset expires at `expires_at` when given (the instant that validity gives
    from `occurred_at`, in the business timezone), else at what `validity` gives, else at
    what the asset's default validity gives.
    """

    model_config = ConfigDict(extra="ignore")

    type: Literal["grant"] = "grant"
    grant_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=64)
    asset: str = Field(DEFAULT_ASSET, pattern=ASSET_PATTERN)
    points: int = Field(gt=0, le=100_000_000)
    expires_at: AwareDatetime | None = None
    validity: Validity | None = None
    available_at: AwareDatetime | None = None
    task_id: str
    period_key: str
    completion: int = Field(ge=1)
    causation_event_id: str
    occurred_at: AwareDatetime
    reason: str = ""


class ClawbackCommand(BaseModel):
    """Take back what a grant paid, published on rewards.grants (after that grant, same key).

    `clawed_total` is how much of the grant is reversed in all, this refund included (it
    only grows); the ledger reverses the difference from what it reversed before, so a
    replay or a duplicate reverses nothing twice.
    """

    model_config = ConfigDict(extra="ignore")

    type: Literal["clawback"] = "clawback"
    clawback_id: str = Field(min_length=1, max_length=128)
    grant_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=64)
    asset: str = Field(DEFAULT_ASSET, pattern=ASSET_PATTERN)
    clawed_total: int = Field(gt=0, le=100_000_000)
    reference: str = Field(min_length=1, max_length=255)  # the refund behavior
    reason: str = ""
    occurred_at: AwareDatetime


def _command_type(value: Any) -> str:
    # A grant from before commands had a type has none: it is a grant.
    if isinstance(value, dict):
        return str(value.get("type", "grant"))
    return str(getattr(value, "type", "grant"))


# What rewards.grants carries: a grant, or the clawback of one.
RewardCommand = Annotated[
    Annotated[GrantCommand, Tag("grant")] | Annotated[ClawbackCommand, Tag("clawback")],
    Discriminator(_command_type),
]
REWARD_COMMAND: TypeAdapter[GrantCommand | ClawbackCommand] = TypeAdapter(RewardCommand)


LedgerEventType = Literal[
    "credited",
    "debited",
    "expired",
    "refunded",
    "adjusted",
    "pending",
    "released",
    "clawed_back",
    "debt_repaid",
    "extended",
    "hold_placed",
    "hold_voided",
]


class LotDraw(BaseModel):
    """Points a debit or an expiry took from one lot, and when that lot was earned."""

    lot_id: str
    points: int
    earned_at: datetime
    expires_at: datetime | None = None


class LedgerEvent(BaseModel):
    """A movement of an asset on an account, published on ledger.events.

    `points` moves the balance and `balance_after` is that balance; `held` moves the part of
    the balance that open holds reserve (available = balance - held); `pending` moves the
    pending amount (credited, not yet available) and `debt` the debt (clawed back after it was
    spent). Each is signed. `lots` (on `debited` and `expired`) lists the lots the movement
    took from, so a reader can tell how long points were kept.

    Holds (积分抵现 at checkout) carry `hold_id`: `hold_placed` reserves points (`held` > 0,
    `points` 0); the hold's capture is a `debited` event (`points`: minus what was captured,
    `held`: minus the whole hold, the rest being released); `hold_voided` releases the whole
    hold (by the caller, or at its deadline). Held points released after their lot expired
    expire at once (an `expired` event follows).
    """

    type: LedgerEventType
    entry_id: int
    user_id: str
    asset: str = DEFAULT_ASSET
    points: int
    pending: int = 0
    debt: int = 0
    balance_after: int
    idempotency_key: str
    occurred_at: datetime
    reference: str | None = None
    lots: list[LotDraw] | None = None
    held: int = 0
    hold_id: str | None = None


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
    # When the redemption was asked for (its row's creation): with occurred_at, how long a
    # completion took (insights' slow-redemption signal). None from older publishers.
    requested_at: datetime | None = None


class RewardAmount(BaseModel):
    asset: str = Field(pattern=ASSET_PATTERN)
    amount: int


class ProgressEvent(BaseModel):
    """What task_progress decided, published on progress.events keyed by user_id.

    - `task.completed`: a completion of a task (period_key, completion, rewards paid);
    - `checkin.recorded`: a check-in day (`day` in the business timezone, `kind` normal or
      makeup) with the streak it is part of (`streak`: its position in the run of consecutive
      days) and the rewards it paid;
    - `streak.broken`: a check-in after a gap; `previous_streak` is the run that ended on
      `last_day`.

    `event_id` is deterministic: a replay publishes the same id again.
    """

    type: Literal["task.completed", "checkin.recorded", "streak.broken"]
    event_id: str
    user_id: str
    task_id: str
    rule_version: int = 1
    period_key: str | None = None
    completion: int | None = None
    rewards: list[RewardAmount] = Field(default_factory=list)
    day: date | None = None
    kind: Literal["normal", "makeup"] | None = None
    streak: int | None = None
    previous_streak: int | None = None
    last_day: date | None = None
    occurred_at: datetime


class EngagementEvent(BaseModel):
    """What the engagement service decided, published on engagement.events keyed by user_id
    (or by board code for a leaderboard): `badge.awarded`, `tier.changed`,
    `leaderboard.closed`. `data` carries the details of each type (see the engagement
    service's README section)."""

    type: Literal["badge.awarded", "tier.changed", "leaderboard.closed"]
    event_id: str
    user_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime


NotificationCategory = Literal["transactional", "reminders", "marketing"]


class NotifyEvent(BaseModel):
    """What the notifier did with one notification, on notify.events keyed by user_id:
    `sent` once every device is settled and at least one accepted it, `opened` when the user
    opened it (once per notification). `trigger` names the cause (`points_expiring`,
    `streak_at_risk`, `tasks_unfinished`, `redemption_completed`, `redemption_shipped`,
    `redemption_delivered`, `tier_changed`, `badge_awarded`, `campaign`);
    `experiment`/`variant` are set when the copy came from an A/B experiment. The event id is
    derived from the notification id and the type, so a replay publishes the same ids."""

    type: Literal["sent", "opened"]
    event_id: str
    notification_id: str
    user_id: str
    category: NotificationCategory
    trigger: str
    campaign_id: str | None = None
    experiment: str | None = None
    variant: str | None = None
    provider: str | None = None
    occurred_at: datetime


class ExperimentExposure(BaseModel):
    """A user was shown a variant of an experiment, on experiment.exposures keyed by
    user_id. Logged once per (experiment, user): `event_id` is
    `stable_id("exposure", experiment, user_id)`, so a consumer de-duplicates by it."""

    event_id: str
    experiment: str
    variant: str
    user_id: str
    source: str  # the service that showed it
    occurred_at: datetime
