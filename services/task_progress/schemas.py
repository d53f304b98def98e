from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from services.task_progress.domain import OP_ALIASES, OPERATORS, Period, RuleKind
from shared.events import ACTION_PATTERN


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


class TaskCreate(_TaskFields):
    @model_validator(mode="after")
    def _consistent(self) -> TaskCreate:
        check_rule(self.model_dump())
        return self


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
    max_per_period: int | None
    count: int
    completions: int
    points_earned: int
    progress_to_next: int
    status: str


class UserTasks(BaseModel):
    user_id: str
    items: list[UserTaskProgress]
