"""Task rules: their conditions, what they pay, and a rule read from its stored row."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from services.task_progress.domain.checkins import Ladder, LadderStep, Makeup
from shared.events import DEFAULT_ASSET
from shared.validity import Validity, validity_of

RuleKind = Literal["count", "amount_ratio", "checkin"]
# Assets the ledger always has; any other reward_type is checked with the ledger.
BUILTIN_ASSETS = frozenset({"points", "growth"})

# Canonical operator -> how to test it. Word aliases are accepted at the API edge.
OPERATORS = ("==", "!=", ">", ">=", "<", "<=", "in", "not_in", "exists", "contains")
OP_ALIASES = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "=": "=="}
_ORDERING = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class Condition:
    attribute: str
    op: str
    value: Any = None

    def holds(self, attributes: dict[str, Any]) -> bool:
        present = self.attribute in attributes
        if self.op == "exists":
            return present == (self.value is not False)
        if not present:
            return False
        actual = attributes[self.attribute]
        try:
            if self.op == "==":
                return bool(actual == self.value)
            if self.op == "!=":
                return bool(actual != self.value)
            if self.op == "in":
                return actual in self.value
            if self.op == "not_in":
                return actual not in self.value
            if self.op == "contains":
                return self.value in actual
            if isinstance(actual, bool) or isinstance(self.value, bool):
                return False
            return bool(_ORDERING[self.op](actual, self.value))
        except TypeError:
            return False  # e.g. comparing text with a number: the behavior does not qualify


@dataclass(frozen=True)
class Reward:
    """A fixed amount of an asset paid on every completion besides the rule's main reward."""

    asset: str
    amount: int


@dataclass(frozen=True)
class Rule:
    id: str
    action: str
    kind: str
    reward_points: int
    period: str
    target_count: int = 1
    max_per_period: int | None = None
    amount_unit_cents: int | None = None
    amount_attribute: str = "amount_cents"
    conditions: tuple[Condition, ...] = ()
    points_validity_days: int | None = None  # `validity` in days, else None
    active: bool = True
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    reward_type: str = DEFAULT_ASSET
    extra_rewards: tuple[Reward, ...] = ()
    pending_days: int | None = None
    version: int = 1
    ladder: Ladder | None = None  # check-in rules
    makeup: Makeup | None = None
    validity: Validity | None = None  # how long its grants stay valid (None: the asset's)

    @property
    def cap(self) -> int | None:
        """Completions allowed per period; a 'once' task completes once, ever, and a check-in
        rule once a day."""
        return 1 if self.period == "once" or self.kind == "checkin" else self.max_per_period

    def matches(self, action: str, occurred_at: datetime, attributes: dict[str, Any]) -> bool:
        if not self.active or action != self.action:
            return False
        if self.starts_at is not None and occurred_at < self.starts_at:
            return False
        if self.ends_at is not None and occurred_at >= self.ends_at:
            return False
        return not self.conditions or all(c.holds(attributes) for c in self.conditions)

    def points_for(self, attributes: dict[str, Any]) -> int:
        if self.kind == "amount_ratio":
            amount = attributes.get(self.amount_attribute)
            if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
                return 0
            return (amount // (self.amount_unit_cents or 1)) * self.reward_points
        return self.reward_points


RULE_FIELDS = (
    "action",
    "kind",
    "reward_points",
    "period",
    "target_count",
    "max_per_period",
    "amount_unit_cents",
    "amount_attribute",
    "points_validity_days",
    "active",
    "starts_at",
    "ends_at",
    "reward_type",
    "pending_days",
    "version",
)
# What decides what a rule pays: a change to any of these makes a new version.
REWARD_FIELDS = (
    "action",
    "kind",
    "target_count",
    "reward_points",
    "amount_unit_cents",
    "amount_attribute",
    "period",
    "max_per_period",
    "conditions",
    "points_validity_days",
    "starts_at",
    "ends_at",
    "reward_type",
    "extra_rewards",
    "pending_days",
    "ladder",
    "cycle_days",
    "after_cycle",
    "makeup",
    "validity",
)


def rule_from_row(row: Any) -> Rule:
    """A rule from its stored row (or any object with the same attributes)."""
    values = {f: getattr(row, f) for f in RULE_FIELDS}
    conditions = tuple(
        Condition(c["attribute"], c["op"], c.get("value")) for c in row.conditions or []
    )
    extras = tuple(Reward(e["reward_type"], e["amount"]) for e in row.extra_rewards or [])
    ladder = None
    if row.ladder:
        steps = tuple(LadderStep(s["day"], s["amount"]) for s in row.ladder)
        ladder = Ladder(steps, row.cycle_days or steps[-1].day, row.after_cycle or "restart")
    makeup = Makeup(**row.makeup) if row.makeup else None
    return Rule(
        id=row.id,
        conditions=conditions,
        extra_rewards=extras,
        ladder=ladder,
        makeup=makeup,
        validity=validity_of(getattr(row, "validity", None), row.points_validity_days),
        **values,
    )
