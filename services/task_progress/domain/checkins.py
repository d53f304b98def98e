"""Check-ins (签到): the reward ladder by streak day, make-up terms, and the day book that
adds a check-in to a user's run of consecutive days."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from shared.events import stable_id


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
