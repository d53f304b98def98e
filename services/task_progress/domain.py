"""Pure task rules: period keys, rule matching, advancing progress and what a refund takes
back. No I/O here."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Any, Literal
from zoneinfo import ZoneInfo

from shared.events import DEFAULT_ASSET, stable_id
from shared.periods import calendar_key

Period = Literal["day", "week", "month", "once", "lifetime"]
RuleKind = Literal["count", "amount_ratio", "checkin"]
PERIODS: tuple[str, ...] = ("day", "week", "month", "once", "lifetime")
# Assets the ledger always has; any other reward_type is checked with the ledger.
BUILTIN_ASSETS = frozenset({"points", "growth"})

# Canonical operator -> how to test it. Word aliases are accepted at the API edge.
OPERATORS = ("==", "!=", ">", ">=", "<", "<=", "in", "not_in", "exists", "contains")
OP_ALIASES = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "=": "=="}
_ORDERING = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def period_key(period: str, occurred_at: datetime, tz: ZoneInfo) -> str:
    """Which period a behavior belongs to, by when it happened in the business timezone."""
    if period in ("once", "lifetime"):
        return period
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}")
    return calendar_key(period, occurred_at, tz)


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
    version: int = 1
    ladder: Ladder | None = None  # check-in rules
    makeup: Makeup | None = None

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
    """A completion of a rule by a user in a period. Its grant ids are derived when asked for
    (the dry run never asks: minting ids was most of its time)."""

    user_id: str
    rule_id: str
    period_key: str
    number: int
    points: int  # of the main reward (`asset`)
    expires_at: datetime | None
    asset: str = DEFAULT_ASSET
    available_at: datetime | None = None  # pending until then
    extra_rewards: tuple[Reward, ...] = ()

    @cached_property
    def grant_id(self) -> str:
        return stable_id("grant", self.user_id, self.rule_id, self.period_key, self.number)

    def rewards(self) -> list[tuple[str, int]]:
        """(asset, amount) of every grant, the main reward first."""
        return [(self.asset, self.points)] + [(e.asset, e.amount) for e in self.extra_rewards]

    def payouts(self) -> list[Payout]:
        """Every grant this completion pays: the main reward first, then each extra reward."""
        main = self.grant_id
        return [Payout(main, self.asset, self.points)] + [
            Payout(stable_id("grant-extra", main, e.asset), e.asset, e.amount)
            for e in self.extra_rewards
        ]


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
    return Completion(
        user_id=user_id,
        rule_id=rule.id,
        period_key=key,
        number=progress.completions,
        points=points,
        expires_at=expires_at,
        asset=rule.reward_type,
        available_at=occurred_at + timedelta(days=rule.pending_days) if rule.pending_days else None,
        extra_rewards=rule.extra_rewards,
    )


Match = tuple[Any, Rule, str]  # (behavior, rule, period key)


def match_rules(rules: dict[str, list[Rule]], events: Sequence[Any], tz: ZoneInfo) -> list[Match]:
    """Every (behavior, rule, period key) where a behavior counts for a rule (`rules` by
    action; behaviors have action, occurred_at, attributes). The live consumer and the dry
    run both start here."""
    return [
        (event, rule, period_key(rule.period, event.occurred_at, tz))
        for event in events
        for rule in rules.get(event.action, ())
        if rule.matches(event.action, event.occurred_at, event.attributes)
    ]


def complete(
    matches: Sequence[Match], state: dict[tuple[str, str, str], Progress]
) -> list[tuple[Any, Rule, str, Completion]]:
    """Advance the progress of each count or ratio match in order (`state` by (user, task,
    period), updated in place) and return the completions: the one decision both the live
    consumer and the dry run make."""
    done = []
    for event, rule, key in matches:
        progress = state.get((event.user_id, rule.id, key))
        if progress is None:
            progress = state[(event.user_id, rule.id, key)] = Progress()
        completion = advance(
            rule, progress, event.user_id, key, event.occurred_at, event.attributes
        )
        if completion is not None:
            done.append((event, rule, key, completion))
    return done


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


# Check-ins (签到): a reward ladder by streak day.


@dataclass(frozen=True)
class LadderStep:
    day: int  # the streak position from which `amount` is paid
    amount: int


@dataclass(frozen=True)
class Makeup:
    """补签: a missed day within `window_days` of today may be made up, `max_per_month`
    times per calendar month, for `cost_points` points."""

    window_days: int
    max_per_month: int
    cost_points: int


@dataclass(frozen=True)
class Ladder:
    steps: tuple[LadderStep, ...]
    cycle_days: int  # after this many days the ladder restarts (or holds at its last step)
    after_cycle: str = "restart"  # restart | hold

    def step(self, position: int) -> int:
        """Which ladder day a streak position is paid as."""
        if position <= 0:
            raise ValueError("a streak position starts at 1")
        if self.after_cycle == "hold":
            return min(position, self.cycle_days)
        return (position - 1) % self.cycle_days + 1

    def amount(self, position: int) -> int:
        """What the check-in at this streak position pays: the ladder entry with the largest
        day not past its step (nothing before the first entry)."""
        step = self.step(position)
        paid = [s.amount for s in self.steps if s.day <= step]
        return paid[-1] if paid else 0


@dataclass(frozen=True)
class CheckinDay:
    """A checked-in day as stored: its kind, its position in its run of consecutive days,
    and what it has paid so far."""

    kind: str  # normal | makeup
    streak: int
    paid: int


@dataclass(frozen=True)
class DayChange:
    day: date
    kind: str
    streak: int
    paid: int  # after this change
    grant: int  # paid now: what the new position is worth beyond what the day paid before


@dataclass(frozen=True)
class CheckinPlan:
    changes: list[DayChange]  # the new day first, then the later days of its run
    broken: tuple[int, date] | None  # (previous streak, its last day) when this ends a gap


def plan_checkin(
    ladder: Ladder,
    days: dict[date, CheckinDay],
    new_day: date,
    kind: str,
    last_before: tuple[date, int] | None = None,
) -> CheckinPlan | None:
    """Add a check-in on `new_day` to a user's check-in `days` of one rule.

    `days` must hold the day before `new_day` (if checked in) and every checked-in day after
    it; `last_before`: the latest checked-in day before `new_day` with its streak, if any.
    The new day's streak position follows the day before it; the days after it in the same
    run move up by as many positions. Each day is paid what its position is worth beyond what
    it paid before (never less: a longer streak never takes back). Returns None when the day
    is already checked in (a replay or a second check-in the same day).
    """
    if new_day in days:
        return None
    before = days.get(new_day - timedelta(days=1))
    position = before.streak + 1 if before is not None else 1
    changes: list[DayChange] = []
    day, day_kind, paid_before = new_day, kind, 0
    while True:
        target = ladder.amount(position)
        paid = max(paid_before, target)
        changes.append(DayChange(day, day_kind, position, paid, paid - paid_before))
        day += timedelta(days=1)
        following = days.get(day)
        if following is None:
            break
        position += 1
        day_kind, paid_before = following.kind, following.paid
    broken = None
    if before is None and last_before is not None and kind == "normal":
        broken = (last_before[1], last_before[0])
    return CheckinPlan(changes, broken)


def current_streak(days: dict[date, int], today: date) -> int:
    """The streak as of `today` (`days`: checked-in day -> its stored streak position):
    counted back from today, or from yesterday when today has no check-in yet."""
    if today in days:
        return days[today]
    return days.get(today - timedelta(days=1), 0)


def checkin_day(occurred_at: datetime, tz: ZoneInfo) -> date:
    """The business day a check-in belongs to (23:59 and 00:01 are two days)."""
    return occurred_at.astimezone(tz).date()


def checkin_grant_id(user_id: str, task_id: str, day: date, paid: int) -> str:
    """A check-in day's grant, by what the day has paid in all once it is made: recomputing
    the same change mints the same id, so nothing is paid twice."""
    return stable_id("checkin", user_id, task_id, day.isoformat(), paid)


@dataclass
class DayBook:
    """One user's check-in days of one rule, as far as a batch needs them: the days from the
    day before its earliest check-in on, and the latest day before that (`last_loaded`)."""

    days: dict[date, CheckinDay] = field(default_factory=dict)
    last_loaded: tuple[date, int] | None = None
    changed: set[date] = field(default_factory=set)

    def last_before(self, day: date) -> tuple[date, int] | None:
        earlier = [d for d in self.days if d < day]
        if earlier:
            latest = max(earlier)
            return latest, self.days[latest].streak
        return self.last_loaded

    def check_in(self, ladder: Ladder, day: date, kind: str) -> CheckinPlan | None:
        """Add a check-in (see plan_checkin) and keep its changes."""
        plan = plan_checkin(ladder, self.days, day, kind, self.last_before(day))
        if plan is not None:
            for c in plan.changes:
                self.days[c.day] = CheckinDay(c.kind, c.streak, c.paid)
                self.changed.add(c.day)
        return plan


# Rules as stored.

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
        **values,
    )


# Member tiers: the points multiplier.


@dataclass
class TierBook:
    """Users' tier multipliers over time (from engagement's tier.changed), as far as a batch
    needs them. A user with no change known earns at 1x."""

    changes: dict[str, list[tuple[datetime, int, float]]] = field(default_factory=dict)

    def add(self, user_id: str, effective_at: datetime, sequence: int, multiplier: float) -> None:
        self.changes.setdefault(user_id, []).append((effective_at, sequence, multiplier))
        self.changes[user_id].sort()

    def multiplier(self, user_id: str, at: datetime) -> float:
        """The multiplier of the tier the user held at `at` (the latest change by then)."""
        held = 1.0
        for effective_at, _, multiplier in self.changes.get(user_id, ()):
            if effective_at > at:
                break
            held = multiplier
        return held


def multiplied(points: int, multiplier: float) -> int:
    """Points times a tier multiplier, rounded down, never below one point."""
    return max(1, int(points * multiplier)) if multiplier != 1.0 else points
