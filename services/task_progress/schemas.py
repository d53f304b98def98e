"""task_progress's HTTP bodies: rules (create, patch, read), the dry run, check-ins and
make-ups, a user's progress, order refunds; and the checks a whole rule must pass."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.task_progress.domain import OP_ALIASES, OPERATORS, Period, RuleKind
from shared.events import ACTION_PATTERN, ASSET_PATTERN, DEFAULT_ASSET
from shared.instants import Day, Instant
from shared.validity import Validity, validity_of

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


class LadderStepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    day: int = Field(ge=1, le=366, description="streak day from which this amount is paid")
    amount: int = Field(ge=1, le=1_000_000)


class MakeupIn(BaseModel):
    """补签: which missed days may be made up, how often, at what cost in points."""

    model_config = ConfigDict(extra="forbid")

    window_days: int = Field(ge=1, le=31, description="how far back a missed day may be")
    max_per_month: int = Field(ge=1, le=31, description="make-ups per calendar month")
    cost_points: int = Field(ge=0, le=1_000_000)


AfterCycle = Literal["restart", "hold"]
VALIDITY_DOC = (
    "how long its grants stay valid: days, or until the end of the Nth month (months_end) or "
    "year (year_end) after earning, in the business timezone; none: the asset's default"
)
# The default of a field a request may leave out but not send as null: the field keeps its
# type (null is refused, the OpenAPI stays `integer`) and a validator fills it in.
NOT_GIVEN = cast(int, None)


class _TaskFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    action: str = Field(pattern=ACTION_PATTERN)
    kind: RuleKind = "count"
    target_count: int = Field(1, ge=1, le=100_000)
    # Check-in rules take theirs from the ladder, so a new rule may leave it out (not null):
    # TaskCreate fills it in, and every validated rule holds an int.
    reward_points: int = Field(NOT_GIVEN, ge=1, le=1_000_000)
    amount_unit_cents: int | None = Field(None, ge=1, le=10**12)
    amount_attribute: str = Field("amount_cents", min_length=1, max_length=64)
    period: Period = "day"
    max_per_period: int | None = Field(None, ge=1, le=1_000_000)
    conditions: list[ConditionIn] = Field(default_factory=list, max_length=20)
    points_validity_days: int | None = Field(
        None, ge=1, le=36500, description="the same as validity {mode: days, n}"
    )
    validity: Validity | None = Field(None, description=VALIDITY_DOC)
    active: bool = True
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    reward_type: str = Field(DEFAULT_ASSET, pattern=ASSET_PATTERN, description="asset code")
    extra_rewards: list[ExtraReward] = Field(default_factory=list, max_length=MAX_EXTRA_REWARDS)
    pending_days: int | None = Field(
        None, ge=1, le=365, description="rewards are pending (not spendable) for this many days"
    )
    ladder: list[LadderStepIn] | None = Field(None, min_length=1, max_length=60)
    cycle_days: int | None = Field(
        None, ge=1, le=366, description="the ladder restarts (or holds) after this many days"
    )
    after_cycle: AfterCycle = "restart"
    makeup: MakeupIn | None = None


def check_checkin_rule(fields: dict[str, Any]) -> None:
    ladder = fields.get("ladder")
    if fields.get("kind") != "checkin":
        if ladder or fields.get("makeup") or fields.get("cycle_days"):
            raise ValueError("ladder, cycle_days and makeup belong to check-in rules")
        return
    if not ladder:
        raise ValueError("a check-in rule needs a ladder: [{day, amount}, ...]")
    days = [step["day"] for step in ladder]
    if days[0] != 1 or days != sorted(set(days)):
        raise ValueError("ladder days start at 1 and increase")
    if fields.get("period", "day") != "day" or fields.get("target_count", 1) != 1:
        raise ValueError("a check-in rule counts one check-in per business day (period day)")
    if fields.get("extra_rewards"):
        raise ValueError("a check-in rule pays its ladder in reward_type, without extra_rewards")
    cycle = fields.get("cycle_days")
    if cycle is not None and cycle < days[-1]:
        raise ValueError("cycle_days cannot be shorter than the ladder")


def check_rule(fields: dict[str, Any]) -> None:
    check_checkin_rule(fields)
    if fields.get("kind") != "checkin" and fields.get("reward_points") is None:
        raise ValueError("reward_points is required")
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


def sync_validity(fields: dict[str, Any], current: Validity | None = None) -> None:
    """Make a rule's (or a patch's) `validity` and `points_validity_days` say the same, in
    place, as JSON. points_validity_days speaks for days mode only: null there clears a
    validity in days, not one to a month's or a year's end (`current`: the rule's now)."""
    days = fields.get("points_validity_days")
    if "validity" in fields:
        validity = validity_of(fields["validity"], None)
        if "points_validity_days" in fields and days != (validity.days if validity else None):
            raise ValueError("give validity or points_validity_days, not both")
    elif "points_validity_days" in fields:
        validity = validity_of(None, days)
        if validity is None and current is not None and current.mode != "days":
            validity = current
    else:
        return
    fields["validity"] = validity.model_dump() if validity else None
    fields["points_validity_days"] = validity.days if validity else None


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
        if self.validity is None and self.points_validity_days is not None:
            self.validity = Validity.of_days(self.points_validity_days)
        elif self.validity is not None:
            if self.points_validity_days not in (None, self.validity.days):
                raise ValueError("give validity or points_validity_days, not both")
            self.points_validity_days = self.validity.days
        if self.kind == "checkin":
            assert self.ladder  # check_rule
            if self.reward_points is None:  # shown as what the ladder pays at its top
                self.reward_points = max(step.amount for step in self.ladder)
            if self.cycle_days is None:
                self.cycle_days = self.ladder[-1].day
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
        "after_cycle",
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
    validity: Validity | None = Field(None, description=VALIDITY_DOC + " (null clears it)")
    active: bool | None = None
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    reward_type: str | None = Field(None, pattern=ASSET_PATTERN)
    extra_rewards: list[ExtraReward] | None = Field(None, max_length=MAX_EXTRA_REWARDS)
    pending_days: int | None = Field(None, ge=1, le=365)
    ladder: list[LadderStepIn] | None = Field(None, min_length=1, max_length=60)
    cycle_days: int | None = Field(None, ge=1, le=366)
    after_cycle: AfterCycle | None = None
    makeup: MakeupIn | None = None

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
    version: int = Field(description="bumped by every change of what the rule pays")
    created_at: datetime
    updated_at: datetime


class TaskVersion(BaseModel):
    version: int
    rule: dict[str, Any] = Field(description="the fields that decide what the rule pays")
    created_at: datetime


class TaskVersions(BaseModel):
    task_id: str
    items: list[TaskVersion]


class SimulateRequest(BaseModel):
    """A draft rule replayed on the behaviors of [from, to)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    rule: TaskCreate
    from_: Instant = Field(alias="from")
    to: Instant

    @model_validator(mode="after")
    def _window(self) -> SimulateRequest:
        if self.to <= self.from_:
            raise ValueError("to must be after from")
        if (self.to - self.from_).days > 366:
            raise ValueError("simulate at most 366 days at a time")
        return self


class SimulatedUser(BaseModel):
    user_id: str
    completions: int
    rewards: dict[str, int]


class SimulatedDay(BaseModel):
    day: date
    behaviors: int
    completions: int
    rewards: dict[str, int]


class SimulationOut(BaseModel):
    behaviors_scanned: int
    users_matched: int
    completions: int
    rewards: dict[str, int]
    top_users: list[SimulatedUser]
    by_day: list[SimulatedDay]


class CheckinDayOut(BaseModel):
    day: date
    kind: Literal["normal", "makeup"]


class CheckinsOut(BaseModel):
    user_id: str
    task_id: str
    month: str
    reward_type: str
    days: list[CheckinDayOut]
    current_streak: int
    longest_streak: int
    today_reward: int = Field(description="what today's check-in pays (or paid)")
    tomorrow_reward: int = Field(description="what tomorrow's pays if the streak holds")


class MakeupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: str = Field(min_length=1, max_length=36)
    day: Day
    idempotency_key: str = Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")


class RewardOut(BaseModel):
    asset: str
    amount: int


class MakeupOut(BaseModel):
    user_id: str
    task_id: str
    day: date
    kind: Literal["makeup"] = "makeup"
    streak: int = Field(description="the made-up day's position in its streak")
    cost_points: int
    rewards: list[RewardOut] = Field(description="what the make-up paid: only new ladder steps")


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
    model_config = ConfigDict(from_attributes=True)

    grant_id: str
    asset: str
    clawed_total: int


class OrderSettlement(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    order_no: str
    paid_cents: int
    refunded_cents: int
    clawbacks: list[ClawbackOut]


class OrderRefundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    refund_no: str
    amount_cents: int
    created_at: datetime


class OrderGrantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

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
