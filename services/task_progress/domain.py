"""Pure task rules: period keys, rule matching, advancing progress and what a refund takes
back. No I/O here."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from shared.events import DEFAULT_ASSET, stable_id

Period = Literal["day", "week", "month", "once", "lifetime"]
RuleKind = Literal["count", "amount_ratio"]
PERIODS: tuple[str, ...] = ("day", "week", "month", "once", "lifetime")
# Assets the ledger always has; any other reward_type is checked with the ledger.
BUILTIN_ASSETS = frozenset({"points", "growth"})

# Canonical operator -> how to test it. Word aliases are accepted at the API edge.
OPERATORS = ("==", "!=", ">", ">=", "<", "<=", "in", "not_in", "exists", "contains")
OP_ALIASES = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "=": "=="}
_ORDERING = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def period_key(period: str, occurred_at: datetime, tz: ZoneInfo) -> str:
    """Which period a behavior belongs to, by when it happened in the business timezone."""
    local = occurred_at.astimezone(tz)
    if period == "day":
        return local.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return local.strftime("%Y-%m")
    if period in ("once", "lifetime"):
        return period
    raise ValueError(f"unknown period {period!r}")


def period_end(period: str, now: datetime, tz: ZoneInfo) -> datetime | None:
    """When the period containing `now` ends (None for periods that never reset)."""
    local = now.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return midnight + timedelta(days=1)
    if period == "week":
        return midnight + timedelta(days=7 - local.weekday())
    if period == "month":
        first = midnight.replace(day=1)
        return (first + timedelta(days=32)).replace(day=1)
    return None


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
    points_validity_days: int | None = None
    active: bool = True
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    reward_type: str = DEFAULT_ASSET
    extra_rewards: tuple[Reward, ...] = ()
    pending_days: int | None = None

    @property
    def cap(self) -> int | None:
        """Completions allowed per period; a 'once' task completes once, ever."""
        return 1 if self.period == "once" else self.max_per_period

    def matches(self, action: str, occurred_at: datetime, attributes: dict[str, Any]) -> bool:
        if not self.active or action != self.action:
            return False
        if self.starts_at is not None and occurred_at < self.starts_at:
            return False
        if self.ends_at is not None and occurred_at >= self.ends_at:
            return False
        return all(c.holds(attributes) for c in self.conditions)

    def points_for(self, attributes: dict[str, Any]) -> int:
        if self.kind == "amount_ratio":
            amount = attributes.get(self.amount_attribute)
            if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
                return 0
            return (amount // (self.amount_unit_cents or 1)) * self.reward_points
        return self.reward_points


@dataclass
class Progress:
    count: int = 0
    completions: int = 0
    points: int = 0
    last_event_at: datetime | None = None


@dataclass(frozen=True)
class Payout:
    """One grant of a completion: an amount of one asset."""

    grant_id: str
    asset: str
    points: int


@dataclass(frozen=True)
class Completion:
    grant_id: str
    number: int
    points: int  # of the main reward (`asset`)
    expires_at: datetime | None
    asset: str = DEFAULT_ASSET
    available_at: datetime | None = None  # pending until then
    extras: tuple[Payout, ...] = ()

    def payouts(self) -> list[Payout]:
        """Every grant this completion pays: the main reward first, then each extra reward."""
        return [Payout(self.grant_id, self.asset, self.points), *self.extras]


def advance(
    rule: Rule,
    progress: Progress,
    user_id: str,
    key: str,
    occurred_at: datetime,
    attributes: dict[str, Any],
) -> Completion | None:
    """Count one matching behavior; return the completion it causes, if any."""
    progress.count += 1
    if progress.last_event_at is None or occurred_at > progress.last_event_at:
        progress.last_event_at = occurred_at
    cap = rule.cap
    if cap is not None and progress.completions >= cap:
        return None
    if rule.kind == "count" and progress.count % rule.target_count != 0:
        return None
    points = rule.points_for(attributes)
    if points <= 0:
        return None
    progress.completions += 1
    progress.points += points
    expires_at = (
        occurred_at + timedelta(days=rule.points_validity_days)
        if rule.points_validity_days
        else None
    )
    grant_id = stable_id("grant", user_id, rule.id, key, progress.completions)
    return Completion(
        grant_id=grant_id,
        number=progress.completions,
        points=points,
        expires_at=expires_at,
        asset=rule.reward_type,
        available_at=occurred_at + timedelta(days=rule.pending_days) if rule.pending_days else None,
        extras=tuple(
            Payout(stable_id("grant-extra", grant_id, extra.asset), extra.asset, extra.amount)
            for extra in rule.extra_rewards
        ),
    )


def status_of(rule: Rule, progress: Progress) -> str:
    cap = rule.cap
    if cap is not None and progress.completions >= cap:
        return "completed"
    return "in_progress" if progress.count else "not_started"


# Refunds: what an order's grants give back.


def order_behavior_id(source: str, order_no: str) -> str:
    """The behavior id of an order's `order_paid` (the sensor's id of (source, event_id))."""
    return stable_id("behavior", source, order_no)


def refunded_total(paid_cents: int, refunds_cents: Sequence[int]) -> int:
    """How much of an order is refunded in all: the sum of its refunds, never above paid."""
    return min(paid_cents, sum(refunds_cents))


def clawed_total(grant_points: int, paid_cents: int, refunds_cents: Sequence[int]) -> int:
    """How much of a grant an order's refunds take back in all: the refunded share of its
    points, rounded down so that no one loses more than the order earned. A full refund takes
    everything, also from an order paid with nothing."""
    if not refunds_cents:
        return 0
    refunded = refunded_total(paid_cents, refunds_cents)
    if refunded >= paid_cents:
        return grant_points
    return grant_points * refunded // paid_cents


def yuan(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


@dataclass(frozen=True)
class Clawback:
    grant_id: str
    asset: str
    clawed_total: int

    @property
    def clawback_id(self) -> str:
        # The same cumulative total always has the same id: recomputing it emits a duplicate.
        return stable_id("clawback", self.grant_id, self.clawed_total)


@dataclass(frozen=True)
class OrderGrant:
    grant_id: str
    asset: str
    points: int


def clawbacks(
    grants: Sequence[OrderGrant], paid_cents: int, refunds_cents: Sequence[int]
) -> list[Clawback]:
    """The cumulative clawback of every grant an order caused that its refunds touch."""
    found = [
        Clawback(g.grant_id, g.asset, clawed_total(g.points, paid_cents, refunds_cents))
        for g in grants
    ]
    return [c for c in found if c.clawed_total > 0]
