from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from services.task_progress.domain import OP_ALIASES, OPERATORS, Period, RuleKind
from shared.events import ACTION_PATTERN, ASSET_PATTERN, DEFAULT_ASSET

MAX_EXTRA_REWARDS = 5


class ConditionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attribute: str = Field(min_length=1, max_length=64)
    op: str
    value: Any = None

    @field_validator("op")
    @classmethod
    def _known_op(cls, op: str) -> str:
        op = OP_ALIASES.get(op, op)
        if op not in OPERATORS:
            raise ValueError(f"op must be one of {', '.join(OPERATORS)}")
        return op

    @model_validator(mode="after")
    def _value_fits(self) -> ConditionIn:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"'{self.op}' needs a list value")
        if self.op in (">", ">=", "<", "<=") and (
            isinstance(self.value, bool) or not isinstance(self.value, (int, float, str))
        ):
            raise ValueError(f"'{self.op}' needs a number or string value")
        if self.op not in ("exists",) and self.value is None:
            raise ValueError(f"'{self.op}' needs a value")
        return self


class ExtraReward(BaseModel):
    """A fixed amount of another asset paid on every completion, besides the main reward."""

    model_config = ConfigDict(extra="forbid")

    reward_type: str = Field(pattern=ASSET_PATTERN)
    amount: int = Field(ge=1, le=1_000_000)


class _TaskFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    action: str = Field(pattern=ACTION_PATTERN)
    kind: RuleKind = "count"
    target_count: int = Field(1, ge=1, le=100_000)
    reward_points: int = Field(ge=1, le=1_000_000)
    amount_unit_cents: int | None = Field(None, ge=1, le=10**12)
    amount_attribute: str = Field("amount_cents", min_length=1, max_length=64)
    period: Period = "day"
    max_per_period: int | None = Field(None, ge=1, le=1_000_000)
    conditions: list[ConditionIn] = Field(default_factory=list, max_length=20)
    points_validity_days: int | None = Field(None, ge=1, le=36500)
    active: bool = True
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    reward_type: str = Field(DEFAULT_ASSET, pattern=ASSET_PATTERN, description="asset code")
    extra_rewards: list[ExtraReward] = Field(default_factory=list, max_length=MAX_EXTRA_REWARDS)
    pending_days: int | None = Field(
        None, ge=1, le=365, description="rewards are pending (not spendable) for this many days"
    )


def check_rule(fields: dict[str, Any]) -> None:
    if fields.get("kind") == "amount_ratio":
        if not fields.get("amount_unit_cents"):
            raise ValueError(
                "amount_ratio tasks need amount_unit_cents (e.g. 1000 = 1 point per 10 yuan)"
            )
        if fields.get("target_count", 1) != 1:
            raise ValueError(
                "amount_ratio tasks complete on every qualifying behavior: target_count must be 1"
            )
    starts, ends = fields.get("starts_at"), fields.get("ends_at")
    if starts is not None and ends is not None and ends <= starts:
        raise ValueError("ends_at must be after starts_at")
    codes = [extra["reward_type"] for extra in fields.get("extra_rewards") or []]
    if len(set(codes)) != len(codes):
        raise ValueError("extra_rewards name each reward_type at most once")
    if fields.get("reward_type", DEFAULT_ASSET) in codes:
        raise ValueError("extra_rewards must differ from the rule's own reward_type")


def reward_assets(fields: dict[str, Any]) -> set[str]:
    """Every asset code a rule (or a patch of one) names."""
    codes = {extra["reward_type"] for extra in fields.get("extra_rewards") or []}
    if fields.get("reward_type"):
        codes.add(fields["reward_type"])
    return codes


class TaskCreate(_TaskFields):
    @model_validator(mode="after")
    def _consistent(self) -> TaskCreate:
        check_rule(self.model_dump())
        return self


NOT_NULL = frozenset(
    {
        "name",
        "description",
        "action",
        "kind",
        "target_count",
        "reward_points",
        "amount_attribute",
        "period",
        "conditions",
        "active",
        "reward_type",
        "extra_rewards",
    }
)


class TaskPatch(BaseModel):
    """Every field optional; the merged rule is validated as a whole."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    action: str | None = Field(None, pattern=ACTION_PATTERN)
    kind: RuleKind | None = None
    target_count: int | None = Field(None, ge=1, le=100_000)
    reward_points: int | None = Field(None, ge=1, le=1_000_000)
    amount_unit_cents: int | None = Field(None, ge=1, le=10**12)
    amount_attribute: str | None = Field(None, min_length=1, max_length=64)
    period: Period | None = None
    max_per_period: int | None = Field(None, ge=1, le=1_000_000)
    conditions: list[ConditionIn] | None = Field(None, max_length=20)
    points_validity_days: int | None = Field(None, ge=1, le=36500)
    active: bool | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    reward_type: str | None = Field(None, pattern=ASSET_PATTERN)
    extra_rewards: list[ExtraReward] | None = Field(None, max_length=MAX_EXTRA_REWARDS)
    pending_days: int | None = Field(None, ge=1, le=365)

    @model_validator(mode="after")
    def _no_null_for_required(self) -> TaskPatch:
        # null clears an optional setting (pending_days, ends_at, ...); a rule cannot lose these
        nulled = sorted(f for f in self.model_fields_set & NOT_NULL if getattr(self, f) is None)
        if nulled:
            raise ValueError(f"{', '.join(nulled)} cannot be null")
        return self


class TaskOut(_TaskFields):
    model_config = ConfigDict(extra="ignore")

    id: str
    created_at: datetime
    updated_at: datetime


class TaskList(BaseModel):
    items: list[TaskOut]
    total: int


class UserTaskProgress(BaseModel):
    task_id: str
    name: str
    description: str
    action: str
    kind: str
    period: str
    period_key: str
    period_ends_at: datetime | None
    target_count: int
    reward_points: int
    reward_type: str
    extra_rewards: list[ExtraReward]
    max_per_period: int | None
    count: int
    completions: int
    points_earned: int
    progress_to_next: int
    status: str


class UserTasks(BaseModel):
    user_id: str
    items: list[UserTaskProgress]


class RefundRequest(BaseModel):
    """An order refunded by operations (the order system's own refunds arrive as behaviors)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    source: str = Field("order_system", min_length=1, max_length=64)
    refund_no: str = Field(min_length=1, max_length=128)
    refund_amount_cents: int | None = Field(
        None, ge=0, le=10**14, description="omitted: whatever is left of the order"
    )


class ClawbackOut(BaseModel):
    grant_id: str
    asset: str
    clawed_total: int


class OrderSettlement(BaseModel):
    order_no: str
    paid_cents: int
    refunded_cents: int
    clawbacks: list[ClawbackOut]


class OrderRefundOut(BaseModel):
    refund_no: str
    amount_cents: int
    created_at: datetime


class OrderGrantOut(BaseModel):
    grant_id: str
    task_id: str
    asset: str
    points: int
    completion: int
    expires_at: datetime | None
    available_at: datetime | None
    clawed_total: int


class OrderOut(OrderSettlement):
    source: str
    user_id: str
    created_at: datetime
    refunds: list[OrderRefundOut]
    grants: list[OrderGrantOut]
